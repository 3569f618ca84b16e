"""Opaque page tokens for keyset paging: the one codec of every List call.

A token names the list it belongs to (`kind`: "anomalies", "profiles:0:shop/*", ...) and holds
the sort key of the last item shown; the next page starts after that key. It is versioned JSON
in URL-safe base64, so a token of another list, another version or a damaged one is refused
with an `InputError` (INVALID_ARGUMENT) rather than read as something else.

>>> decode_token(encode_token("profiles", ["rate", -2.5, "00ab"]), "profiles")
['rate', -2.5, '00ab']
>>> try:
...     decode_token(encode_token("anomalies", [5, "e1"]), "incidents")
... except InputError:
...     print("refused")
refused
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from via_otlp.errors import InputError

_TOKEN_VERSION = 1


def encode_token(kind: str, key: Sequence[Any]) -> str:
    """An opaque cursor: which list it belongs to and the sort key of the last item shown."""
    raw = json.dumps({"v": _TOKEN_VERSION, "k": kind, "after": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def decode_token(token: str, kind: str, shape: tuple[type, ...] | None = None) -> list[Any]:
    """The inverse of `encode_token`; a token of another list or a malformed one is an `InputError`.

    With `shape`, the key must have exactly those types (e.g. ``(int, str)``; a bool is no int).

    >>> decode_token(encode_token("incidents", [5, "i1"]), "incidents", (int, str))
    [5, 'i1']
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data["v"] != _TOKEN_VERSION or data["k"] != kind or not isinstance(data["after"], list):
            raise ValueError(kind)
        after = list(data["after"])
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise malformed_token(token) from None
    if shape is not None and (
        len(after) != len(shape) or any(type(v) is not t for v, t in zip(after, shape, strict=True))
    ):
        raise malformed_token(token)
    return after


def malformed_token(token: str) -> InputError:
    """The error for a token that is not one of this list's (what to do instead in the hint)."""
    return InputError(
        f"malformed page_token {token!r}",
        hint="pass the next_page_token of the previous response, with the same filters",
    )
