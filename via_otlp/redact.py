"""Secrets out of everything a person or a log collector reads: one place, used everywhere.

A DSN, a URL, a token or a header can carry a credential. Whatever shows configuration or
connection targets (`/status`, `ctl status`, `config check`, log lines, error messages) passes
it through these functions first, so a password never leaves the process by accident.

>>> redact_url("postgresql://via:s3cret@db:5432/via?sslmode=require&password=x")
'postgresql://via:***@db:5432/via?sslmode=require&password=***'
>>> redact_text("could not connect to host=db password=s3cret user=via")
'could not connect to host=db password=*** user=via'
>>> redact_config({"control": {"token": "s3cret", "endpoint": "127.0.0.1:4320"}})
{'control': {'token': '***', 'endpoint': '127.0.0.1:4320'}}
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

REDACTED = "***"

# Query or keyword parameters whose value is a credential (compared lower-case).
SECRET_PARAMS = frozenset(
    {"password", "sslpassword", "token", "api_key", "apikey", "access_token", "secret"}
)
# Config keys whose value is a credential; every value under a `headers` key is one too.
SECRET_KEYS = frozenset({"token", "bearer_token", "api_key", "password"})
_HEADER_KEYS = frozenset({"headers"})

_PARAMS = "|".join(sorted(SECRET_PARAMS, key=len, reverse=True))
# `password=value` in free text: a libpq keyword DSN, a query string, a command line.
_KV_RE = re.compile(rf"(?i)(?<![\w-])({_PARAMS})(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)")
# `scheme://user:password@` in free text.
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):([^\s/@]*)@")


def redact_url(url: str) -> str:
    """`url` without its secrets: the userinfo password and secret query parameters → ``***``.

    Anything that is not a ``scheme://`` URL comes back unchanged (an empty string too).
    """
    if "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed port or netloc: fall back to the text rules
        return redact_text(url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = query.split("&")
        for i, pair in enumerate(pairs):
            name, sep, _ = pair.partition("=")
            if sep and urllib.parse.unquote_plus(name).lower() in SECRET_PARAMS:
                pairs[i] = f"{name}={REDACTED}"
        query = "&".join(pairs)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_text(text: str) -> str:
    """Free text (an error message quoting a DSN) with URL passwords and ``password=`` values hidden."""
    text = _USERINFO_RE.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    return _KV_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_config(plain: Any, _secret: bool = False) -> Any:
    """A plain config (`configload.to_plain`) with every secret value replaced by ``***``.

    Values under a secret key (``token``, ``bearer_token``, ``api_key``, ``password``) or under
    ``headers`` are secrets; other strings go through `redact_url`. Empty secrets stay empty, so
    one can still see that none is set.
    """
    if isinstance(plain, dict):
        return {
            k: redact_config(v, _secret or str(k).lower() in SECRET_KEYS | _HEADER_KEYS)
            for k, v in plain.items()
        }
    if isinstance(plain, list | tuple):
        return [redact_config(v, _secret) for v in plain]
    if isinstance(plain, str):
        return REDACTED if _secret and plain else redact_url(plain)
    return plain
