"""Package exports imported on first use (PEP 562), so that importing one light module of a
package (its config, its pure model) does not import the whole stage.

A shard process imports `via_otlp.config`, which names every stage's config section; with
eager package ``__init__``s that pulled in the correlator (aiohttp), the registry (asyncpg) and
the emitter (grpc exporter), none of which a shard uses.

>>> getattr_ = lazy_exports("json", {"dumps": "json"})
>>> getattr_("dumps")([1])
'[1]'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package` that imports `where[name]` when `name` is read
    (and keeps it in the package, so the next read is a plain attribute)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
