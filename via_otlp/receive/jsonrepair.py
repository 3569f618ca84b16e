"""JSON text → Python data that protobuf and UTF-8 can always carry. Pure.

JSON may spell an unpaired UTF-16 surrogate (``"\\ud800"``); Python's `json` turns it into a
`str` that no UTF-8 encoder accepts, so protobuf fails on it far from the parse (as a
`SystemError` for an object key, once a 500 per request). Like invalid UTF-8 bytes, such
characters are content, not a malformed request: they are replaced with U+FFFD, and the caller
counts the request as repaired.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A \uD800-\uDFFF escape somewhere in the text: the only way JSON can produce a surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def loads(data: bytes | str) -> tuple[Any, bool]:
    """Parse JSON text; returns the data and whether anything had to be replaced.

    Invalid UTF-8 bytes and unpaired surrogates become U+FFFD (valid pairs are kept).
    Raises `ValueError` (or `RecursionError`) when the text is not JSON.

    >>> loads(b'{"k\\\\ud800": ["\\\\udc00x", "\\\\ud83d\\\\ude00"]}')
    ({'k�': ['�x', '😀']}, True)
    """
    replaced = False
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", "replace")
            replaced = True
        escapes = _SURROGATE_ESCAPE.search(data) is not None
    else:
        text = data
        escapes = _SURROGATE_ESCAPE.search(data.encode("utf-8", "surrogatepass")) is not None
    doc = json.loads(text)
    if escapes:
        doc, fixed = _repair(doc)
        replaced = replaced or fixed
    return doc, replaced


def _repair(value: Any) -> tuple[Any, bool]:
    """`value` with every lone surrogate replaced (json's own nesting bound keeps this shallow)."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value, False
        return _SURROGATE.sub(REPLACEMENT, value), True
    if isinstance(value, list):
        changed = False
        for i, item in enumerate(value):
            value[i], c = _repair(item)
            changed |= c
        return value, changed
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, ck = _repair(key)
            out[new_key], ci = _repair(item)
            changed |= ck or ci
        return out, changed
    return value, False
