"""Cut a log body down to what its template is made of, before masking.

- A multi-line body (a stack trace) is templated on its first line plus the exception type: the
  frames below change with every deployment and would split one pattern into many.
- A very long line keeps only its first `max_tokens` whitespace-separated tokens: the tail of a
  huge line (a dumped payload) is variable text, and masking it would cost time for nothing.
- A token longer than `max_token_chars` (a payload without spaces) becomes ``<*>``: so every
  token that masking and the miner see, cache and keep is short.

>>> prepare("boom\\nTraceback (most recent call last):\\n  File 'x.py'\\nValueError: bad", 8)
'boom ValueError'
>>> prepare("a b c d e f", 4)
'a b c d'
>>> prepare("data " + "x" * 40 + " end", 8, max_token_chars=16)
'data <*> end'
"""

from __future__ import annotations

import re

from via_otlp.patterns.masking import WILDCARD

# `java.lang.IllegalStateException: msg`, `Caused by: x.y.FooError`, `ValueError: msg`.
_EXCEPTION = re.compile(
    r"^\s*(?:Caused by:\s*|Exception in thread \"[^\"]*\"\s*)?"
    r"((?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$][\w$]*(?:Exception|Error|Exit|Interrupt|Fault|Throwable|Panic))\b",
    re.MULTILINE,
)


def exception_type(rest: str) -> str:
    """The exception type named in the lines after the first ("" if none).

    Java puts the type first and its causes below, so the first one found names it; Python
    prints ``Traceback...`` and ends with the type, so the last one found names it.
    """
    found = _EXCEPTION.findall(rest)
    if not found:
        return ""
    return found[-1] if "Traceback (most recent call last)" in rest else found[0]


def prepare(body: str, max_tokens: int, max_token_chars: int = 512) -> str:
    """The part of `body` that the template is made of (see the module docstring)."""
    if "\n" in body:
        first, _, rest = body.strip("\r\n").partition("\n")
        first = first.rstrip("\r")
        if first.startswith("Traceback (most recent call last)"):
            rest = body
        kind = exception_type(rest) if rest else ""
        body = f"{first} {kind}" if kind and kind not in first else first
    if len(body) > min(2 * max_tokens - 2, max_token_chars):
        parts = body.split(None, max_tokens)
        cut = len(parts) > max_tokens
        if cut:
            del parts[max_tokens:]
        if max(map(len, parts), default=0) > max_token_chars:
            parts = [WILDCARD if len(p) > max_token_chars else p for p in parts]
            cut = True
        if cut:
            body = " ".join(parts)
    return body
