"""Turn a JSON5 document into frozen, typed config dataclasses, with key paths in every error.

The loader is generic: it walks a dataclass's type hints. Constraints live beside the fields
(`field(metadata=...)`, built with `spec()`) so that defaults and limits stay in one place:

- ``ge``/``gt``/``le``/``lt``: numeric bounds;
- ``choices``: allowed values;
- ``unit="duration"``: a number of seconds or a string such as ``"250ms"``, ``"10s"``, ``"5m"``;
- ``unit="size"``: a number of bytes or a string such as ``"64MiB"``, ``"512KiB"``;
- ``nonempty=True``: strings and lists that may not be empty;
- ``env="NAME"``: the built-in default is ``${env:NAME:-<default>}``: when the document does not
  set the key, the environment variable (if set) goes through the same substitution and checks
  as a value written in a file, so ``VIA_GRPC_ENDPOINT=... via-otlp serve`` needs no file.

A dataclass may also define ``check(self) -> None`` raising `ConfigError` with a key relative to
itself, for rules that span several fields.

>>> from dataclasses import dataclass, field
>>> @dataclass(frozen=True)
... class Server:
...     port: int = field(default=4317, metadata=spec(ge=0, le=65535))
>>> load_dataclass(Server, {"port": 80}).port
80
>>> load_dataclass(Server, {"port": -1}, "server")
Traceback (most recent call last):
...
via_otlp.errors.ConfigError: server.port: must be >= 0, got -1
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import json5

from via_otlp.errors import ConfigError

T = TypeVar("T")

_ENV_RE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {
    None: 1.0, "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
    "h": 3600.0, "d": 86400.0,
}  # fmt: skip
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
    "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


def spec(**constraints: Any) -> dict[str, Any]:
    """Field metadata for the loader: ``field(default=1, metadata=spec(gt=0))``."""
    return constraints


def substitute_env(text: str, environ: Mapping[str, str] | None = None, path: str = "") -> str:
    """Replace ``${env:NAME}`` and ``${env:NAME:-default}`` as the Collector does; ``$$`` is ``$``.

    >>> substitute_env("${env:PORT:-4317}", {})
    '4317'
    """
    env = os.environ if environ is None else environ

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            path,
            f"environment variable {name} is not set",
            hint="set it or use ${env:NAME:-default}",
        )

    return _ENV_RE.sub(repl, text)


def parse_duration(value: Any, path: str) -> float:
    """Seconds from a number or a string with a unit (ns, us, ms, s, m, h, d)."""
    if isinstance(value, bool):
        raise ConfigError(path, f"must be a duration such as 10, '10s' or '250ms', got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ConfigError(path, f"must be a duration such as 10, '10s' or '250ms', got {value!r}")


def parse_size(value: Any, path: str) -> int:
    """Bytes from a number or a string with a unit (B, KB, KiB, MB, MiB, GB, GiB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ConfigError(path, f"must be a size such as 4194304 or '64MiB', got {value!r}")


def parse_document(text: str, origin: str = "<config>") -> dict[str, Any]:
    """The JSON5 object of a config file's text (empty text is ``{}``); `origin` names it in
    the `ConfigError` when it is not valid JSON5 or not an object."""
    try:
        data: Any = json5.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError("", f"{origin} is not valid JSON5: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{origin} must hold a JSON5 object at the top level")
    return data


def read_document(path: str | Path) -> dict[str, Any]:
    """`parse_document` of a file; a missing or unreadable file is a `ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "", f"config file {p} does not exist", hint="pass --config FILE"
        ) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {p}: {exc.strerror}") from None
    return parse_document(text, str(p))


def load_section(
    cls: type[T], path: str | Path, key: str, environ: Mapping[str, str] | None = None
) -> T:
    """One section of a config file (`key`, e.g. ``"patterns"``) as `cls`, with key paths from
    the top: for a tool that uses one stage and need not know the others' settings."""
    return load_dataclass(cls, read_document(path).get(key, {}), key, environ)


def load_dataclass(
    cls: type[T], data: Any, path: str = "", environ: Mapping[str, str] | None = None
) -> T:
    """Build `cls` from plain data (dicts, lists, scalars), checking every key and value."""
    return typing.cast(T, _convert(cls, data, path, {}, environ))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
        }.get(tp.__name__, tp.__name__)
    return str(tp)


def _convert(
    tp: Any, value: Any, path: str, meta: Mapping[str, Any], environ: Mapping[str, str] | None
) -> Any:
    if isinstance(value, str):
        value = substitute_env(value, environ, path)
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for arg in inner:
            try:
                return _convert(arg, value, path, meta, environ)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"must be a list, got {value!r}")
        item_tp = get_args(tp)[0] if get_args(tp) else Any
        items = tuple(
            _convert(item_tp, v, _join(path, i), {}, environ) for i, v in enumerate(value)
        )
        _check_constraints(items, path, meta)
        return items if origin is tuple else list(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"must be an object, got {value!r}")
        _, val_tp = get_args(tp)
        return {
            str(k): _convert(val_tp, v, _join(path, str(k)), {}, environ) for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, path, environ)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            names = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(path, f"must be one of {names}, got {value!r}") from None
    return _convert_scalar(tp, value, path, meta)


def _convert_scalar(tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    unit = meta.get("unit")
    if unit == "duration":
        out: Any = parse_duration(value, path)
    elif unit == "size":
        out = parse_size(value, path)
    elif tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # from ${env:...}
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        out = value
    elif tp is int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)  # from ${env:...}
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {value!r}")
        out = value
    elif tp is float:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"must be a number, got {value!r}")
        out = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {value!r}")
        out = value
    else:
        raise ConfigError(path, f"unsupported config type {tp!r}")
    _check_constraints(out, path, meta)
    return out


def _check_constraints(value: Any, path: str, meta: Mapping[str, Any]) -> None:
    if "ge" in meta and value < meta["ge"]:
        raise ConfigError(path, f"must be >= {meta['ge']}, got {value!r}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(path, f"must be > {meta['gt']}, got {value!r}")
    if "le" in meta and value > meta["le"]:
        raise ConfigError(path, f"must be <= {meta['le']}, got {value!r}")
    if "lt" in meta and value >= meta["lt"]:
        raise ConfigError(path, f"must be < {meta['lt']}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(map(repr, meta["choices"]))
        raise ConfigError(path, f"must be one of {allowed}, got {value!r}")
    if meta.get("nonempty") and len(value) == 0:
        raise ConfigError(path, "must not be empty")


def _convert_dataclass(cls: type, value: Any, path: str, environ: Mapping[str, str] | None) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be an object, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            _join(path, unknown[0]),
            "unknown key",
            hint=f"allowed here: {', '.join(sorted(fields))}",
        )
    hints = get_type_hints(cls)
    env = os.environ if environ is None else environ
    kwargs = {}
    from_env: dict[str, str] = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(
                hints[name], value[name], _join(path, name), f.metadata, environ
            )
        elif (var := f.metadata.get("env")) and var in env:
            kwargs[name] = _from_env(hints[name], var, _join(path, name), f.metadata, environ)
            from_env[name] = var
        elif dataclasses.is_dataclass(hints[name]) and f.default_factory is hints[name]:
            # A section the document leaves out: built from {} so its env defaults apply too.
            kwargs[name] = _convert(hints[name], {}, _join(path, name), f.metadata, environ)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(_join(path, name), "is required")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            var = from_env.get(exc.path.split(".")[0].split("[")[0])
            hint = f"from the environment variable {var}" if var and not exc.hint else exc.hint
            raise ConfigError(
                _join(path, exc.path) if exc.path else path, _strip_path(exc), hint=hint
            ) from None
    return obj


def _from_env(
    tp: Any, var: str, path: str, meta: Mapping[str, Any], environ: Mapping[str, str] | None
) -> Any:
    """A built-in default ``${env:VAR}`` for a key the document does not set."""
    try:
        return _convert(tp, f"${{env:{var}}}", path, meta, environ)
    except ConfigError as exc:
        raise ConfigError(
            exc.path, _strip_path(exc), hint=f"from the environment variable {var}"
        ) from None


def env_defaults(cls: type, path: str = "") -> dict[str, str]:
    """Key path → environment variable of every field of `cls` (nested) whose default it sets."""
    out: dict[str, str] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        if "env" in f.metadata:
            out[key] = f.metadata["env"]
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out.update(env_defaults(tp, key))
    return out


def _strip_path(exc: ConfigError) -> str:
    return (
        exc.message[len(exc.path) + 2 :]
        if exc.path and exc.message.startswith(exc.path + ": ")
        else exc.message
    )


def to_plain(obj: Any) -> Any:
    """The effective config as plain data (for `config check` and snapshots)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
