"""OTLP logs request → `LogBatch`: pure translation, no sockets, never an exception on content.

Everything a sender can get wrong in content (no `service.name`, a zero or far-future
timestamp, a body of any AnyValue kind, nesting a thousand levels deep) is normalised and
counted here; only bytes that are not protobuf at all are refused, by the caller.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, methodcaller
from typing import Any, cast, overload

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from via_otlp.model import (
    TEMPLATE_ATTRIBUTE,
    UNKNOWN_SERVICE,
    VIA_SCOPE_NAME,
    AttributeSample,
    LogBatch,
    Source,
)
from via_otlp.receive.config import ReceiveConfig

log = logging.getLogger(__name__)

# The compiled walker's interface this module reads (_wirewalk.c, ABI_VERSION).
WALKER_ABI = 2


def walker_of(module: Any) -> Callable[..., Any] | None:
    """The compiled walker of `module` (its `Walk`) when it is the build this code reads, else
    None, with one warning: an editable install does not rebuild it on `git pull`, and a build
    of another interface would fail every request it walked."""
    version = getattr(module, "ABI_VERSION", None)
    if version == WALKER_ABI:
        return cast(Callable[..., Any], module.Walk)
    log.warning(
        "%s is a stale build (interface %s, this code reads %s): normalising in pure Python "
        "until it is rebuilt (`pip install -e .`)",
        getattr(module, "__file__", "via_otlp/receive/_wirewalk"),
        version,
        WALKER_ABI,
    )
    return None


_walk: Callable[..., Any] | None
try:  # the compiled walker (setup.py, optional): without it, the Python path does it all
    from via_otlp.receive import _wirewalk

    _walk = walker_of(_wirewalk)
    _wirewalk_module: Any = _wirewalk if _walk is not None else None
except ImportError:  # pragma: no cover - built wherever a C compiler is (test_wirewalk.py)
    _walk = None
    _wirewalk_module = None

MAX_RENDER_DEPTH = 16
MAX_SEVERITY_TEXT = 32
_SOURCE_CACHE_MAX = 4096
# Resources remembered by their wire bytes (`_Resource`): how many, and the largest kept.
_RESOURCE_CACHE_MAX = 1024
_RESOURCE_CACHE_BYTES = 2048

_SEVERITY_BY_NUMBER = (
    "UNSPECIFIED",
    *(name for name in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL") for _ in range(4)),
)
_SEVERITY_ALIASES = {
    "TRACE": "TRACE", "FINEST": "TRACE", "FINER": "TRACE",
    "DEBUG": "DEBUG", "FINE": "DEBUG", "DBG": "DEBUG",
    "INFO": "INFO", "INFORMATION": "INFO", "INFORMATIONAL": "INFO", "NOTICE": "INFO",
    "WARN": "WARN", "WARNING": "WARN",
    "ERROR": "ERROR", "ERR": "ERROR", "SEVERE": "ERROR",
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "ALERT": "FATAL",
    "EMERG": "FATAL", "EMERGENCY": "FATAL", "PANIC": "FATAL",
}  # fmt: skip


def severity_of(text: str, number: int) -> str:
    """Canonical severity: from the text when it is a known word, else from the number's range.

    >>> severity_of("warning", 0), severity_of("", 17), severity_of("", 0), severity_of("notice2", 0)
    ('WARN', 'ERROR', 'UNSPECIFIED', 'NOTICE2')
    """
    if text:
        word = text.strip().upper()
        canonical = _SEVERITY_ALIASES.get(word)
        if canonical:
            return canonical
        if 1 <= number <= 24:
            return _SEVERITY_BY_NUMBER[number]
        return word[:MAX_SEVERITY_TEXT] or "UNSPECIFIED"
    if 1 <= number <= 24:
        return _SEVERITY_BY_NUMBER[number]
    return "UNSPECIFIED"


def _plain(value: AnyValue, depth: int) -> Any:
    """An AnyValue as plain JSON data; beyond MAX_RENDER_DEPTH levels, the text '…'."""
    if depth > MAX_RENDER_DEPTH:
        return "…"
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else str(d)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


def render_value(value: AnyValue) -> str:
    """Deterministic text of any AnyValue: strings as is, kvlists/arrays as compact sorted JSON.

    >>> v = AnyValue(); v.kvlist_value.values.add(key="b").value.int_value = 1
    >>> render_value(v)
    '{"b":1}'
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return render_plain(_plain(value, 0))


def render_plain(plain: Any) -> str:
    """The text of a value already made plain: strings as is, ``true``/``false``, numbers by
    `repr`, anything else compact sorted JSON (shared by the protobuf and OTLP/JSON paths, so
    both give every value the same text)."""
    if isinstance(plain, str):
        return plain
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, int | float):
        return repr(plain)
    return json.dumps(plain, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def value_type(value: AnyValue) -> str:
    """The AnyValue kind as a short type name (string, int, double, bool, bytes, array, kvlist)."""
    kind = value.WhichOneof("value")
    return kind[:-6] if kind else "empty"


@dataclass
class IntakeCounts:
    """What normalisation saw and fixed; the service adds these to its status counters."""

    records: int = 0
    future_clamped: int = 0
    missing_timestamp: int = 0
    missing_service_name: int = 0
    loopback_ignored: int = 0

    def add(self, other: IntakeCounts) -> None:
        self.records += other.records
        self.future_clamped += other.future_clamped
        self.missing_timestamp += other.missing_timestamp
        self.missing_service_name += other.missing_service_name
        self.loopback_ignored += other.loopback_ignored


_RECEIVE_DEFAULTS = ReceiveConfig()


@dataclass(frozen=True)
class NormaliseOptions:
    """The receive config keys normalisation uses (defaults: those of `ReceiveConfig`)."""

    source_attributes: tuple[str, ...] = _RECEIVE_DEFAULTS.source_attributes
    unique_id_attributes: tuple[str, ...] = _RECEIVE_DEFAULTS.unique_id_attributes
    max_future_skew_ns: int = int(_RECEIVE_DEFAULTS.max_future_skew * 1e9)
    sample_every: int = _RECEIVE_DEFAULTS.attribute_sample_every

    @classmethod
    def from_config(cls, receive: ReceiveConfig) -> NormaliseOptions:
        return cls(
            source_attributes=receive.source_attributes,
            unique_id_attributes=receive.unique_id_attributes,
            max_future_skew_ns=int(receive.max_future_skew * 1e9),
            sample_every=receive.attribute_sample_every,
        )


def _attribute_maps_class() -> Any:
    """A message class that reads an ExportLogsServiceRequest's log-record attributes as maps.

    A protobuf map field is, on the wire, a repeated message of key (1) and value (2): exactly
    OTLP's repeated KeyValue. Parsed as `map<string, bytes>`, the attributes can be looked up
    by key in C, each value as its AnyValue's wire bytes (no AnyValue object is made: `_scalar`
    reads the few distinct ones); every other field is skipped (kept as unknown bytes).
    """
    pool = descriptor_pool.Default()
    name = "via_otlp/receive/attribute_bytes.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        pkg = "via_otlp.attribute_bytes"
        fd = descriptor_pb2.FileDescriptorProto(name=name, package=pkg, syntax="proto3")
        rec = fd.message_type.add(name="Record")
        entry = rec.nested_type.add(name="AttributesEntry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, label=1, type=9)
        entry.field.add(name="value", number=2, label=1, type=12)  # bytes: the AnyValue's wire
        rec.field.add(name="attributes", number=6, label=3, type=11,
                      type_name=f".{pkg}.Record.AttributesEntry")  # fmt: skip
        for outer, inner, number in (("Scope", "Record", 2), ("Resource", "Scope", 2),
                                     ("Request", "Resource", 1)):  # fmt: skip
            m = fd.message_type.add(name=outer)
            m.field.add(name="items", number=number, label=3, type=11,
                        type_name=f".{pkg}.{inner}")  # fmt: skip
        pool.Add(fd)
    desc = pool.FindMessageTypeByName("via_otlp.attribute_bytes.Request")
    return message_factory.GetMessageClass(desc)


_AttributeMaps = _attribute_maps_class()
# The maps take about as much memory as the request parsed (unknown fields are kept): larger
# requests (a 19 MiB one: +69 MiB) use the attribute loop, so decoding never holds two copies.
MAP_LOOKUP_MAX_BYTES = 4 << 20
_ATTRIBUTES = attrgetter("attributes")


def _attribute_maps(wire: bytes) -> Any:
    """`wire`'s log records' attributes as maps (`.items[r].items[s].items[i].attributes`),
    or None when they do not parse."""
    try:
        return _AttributeMaps.FromString(wire)
    except (DecodeError, RecursionError, ValueError):
        return None


_RECORD_FIELDS = attrgetter(
    "body", "severity_text", "severity_number", "time_unix_nano", "trace_id"
)
_NO_VALUE = AnyValue()  # what a map lookup gives for a key a record does not hold
_STRING_VALUE = attrgetter("string_value")


def _texts(values: Sequence[AnyValue]) -> list[str]:
    """Each value's text (`render_value`): string values read in C, the others rendered."""
    texts: list[str] = list(map(_STRING_VALUE, values))
    if "" in texts:
        for i, text in enumerate(texts):
            if not text and values[i] is not _NO_VALUE:
                texts[i] = render_value(values[i])
    return texts


def _key_field(key: str) -> bytes | None:
    """A KeyValue's key field for `key` on the wire, from its length on (length, UTF-8), when
    counting it in a request counts the KeyValues with that key: not for an empty key (proto3
    leaves it out) or bytes that could overlap themselves (then `bytes.count` could miss one).

    Counted from the length, not the tag: a tag written as a longer varint (0x8a 0x00, which
    parsers accept) ends just as the usual one does. A length written so ends in 0x00 right
    before the key instead (`_key_count` checks that none is)."""
    data = key.encode()
    if not data or len(data) >= 0x80:
        return None
    field = bytes([len(data)]) + data
    if any(field[i:] == field[: len(field) - i] for i in range(1, len(field))):
        return None
    return field


def _key_count(raw: bytes, key: str, holding: int) -> int:
    """How many times `raw` holds `key`, counted so that it is never fewer than the KeyValues
    with that key, and is `holding` (the records holding it) when no record holds it twice.

    First the key's bytes (`bytes.count`: as many as fit apart; every KeyValue holds them in
    bytes of its own, however its tags and lengths are written; an empty key counts
    len(raw) + 1): one pass, enough on most traffic. Where they occur elsewhere too (a body
    mentions the key, a longer key holds it: enduser.id holds user.id), the key field
    (`_key_field`), whose length byte those lack, when it counts every KeyValue: no length
    written as a longer varint (it puts 0x00 right before the key)."""
    found = raw.count(key.encode())
    if found == holding:
        return found
    field = _key_field(key)
    if field is None or raw.count(field) != holding or b"\0" + field[1:] in raw:
        return found
    return holding


_SCALAR_KINDS = frozenset(
    {"string_value", "int_value", "double_value", "bool_value", "bytes_value"}
)
# A value's text is kept (`_TextCache`) only when its wire bytes are this short: the values
# that repeat (ids, hints) are; a long one would hold its bytes, up to the request limit, per entry.
_VALUE_CACHED_MAX_BYTES = 256
_VALUE_TEXTS_BYTES = 1 << 21  # what a `_TextCache` may hold (`_TextCache.cost` summed)


@dataclass
class _TextCache:
    """Texts of attribute values by their wire bytes, bounded by the bytes they hold."""

    texts: dict[bytes | None, str] = field(default_factory=lambda: {None: ""})
    held: int = 0  # `cost` of every entry

    @staticmethod
    def cost(wire: bytes) -> int:
        """About the bytes an entry holds: the wire bytes, a text as long, objects and slot."""
        return 2 * len(wire) + 128

    def add(self, wire: bytes, text: str) -> None:
        """Keeps `text` for a short `wire`, first emptying the cache if it would pass its bound."""
        if len(wire) > _VALUE_CACHED_MAX_BYTES:
            return
        cost = self.cost(wire)
        if self.held + cost > _VALUE_TEXTS_BYTES:
            self.texts.clear()
            self.texts[None] = ""
            self.held = 0
        self.texts[wire] = text
        self.held += cost


def _scalar_text(wire: bytes, read: Callable[[AnyValue], str]) -> str | None:
    """What `read` gives of the AnyValue whose wire bytes are `wire`, when those bytes alone
    give it: they are the last value field of their KeyValue, which a parser merges into any
    value field before it, so only a scalar (whatever came before, the last scalar set wins)
    reads the same alone as merged. None otherwise (an array or kvlist, or nothing set)."""
    try:
        value = AnyValue.FromString(wire)
    except (DecodeError, RecursionError, ValueError):
        return None
    return read(value) if value.WhichOneof("value") in _SCALAR_KINDS else None


def _value_texts(
    column: list[bytes | None], cache: _TextCache, read: Callable[[AnyValue], str]
) -> list[str] | None:
    """Each value's text (`read`; "" where a record holds none), the short ones computed once
    (`cache`), or None when one cannot be read from its bytes (`_scalar_text`)."""
    texts: list[str | None] = list(map(cache.texts.get, column))
    if None in texts:
        for i, text in enumerate(texts):
            if text is None:
                wire = column[i]
                assert wire is not None  # `cache` maps None to ""
                n = len(wire)
                if n >= 2 and wire[0] == 0x0A and wire[1] == n - 2 < 0x80:
                    try:  # one string field, all of `wire`: its text whatever `read` is
                        text = wire[2:].decode("utf-8")
                    except UnicodeDecodeError:
                        return None
                else:
                    text = _scalar_text(wire, read)
                    if text is None:
                        return None
                texts[i] = text
                cache.add(wire, text)
    return cast(list[str], texts)


class _Resource:
    """What a Resource gives every record under it: its source, whether it names no service,
    and (made once, when a schema sample first asks) its attributes' types. A pure function of
    the Resource's wire bytes, so remembered by them across requests (`Normaliser._resource`):
    a sender repeats the same few Resources, and reading them through the protobuf accessors
    (~10 µs for three attributes) was paid on every ResourceLogs of every request."""

    __slots__ = ("source", "types", "unnamed")

    def __init__(self, source: Source, unnamed: bool) -> None:
        self.source = source
        self.unnamed = unnamed
        self.types: tuple[tuple[str, str], ...] | None = None

    def types_of(self, attributes: Iterable[KeyValue]) -> tuple[tuple[str, str], ...]:
        """The attributes' types (`attributes`: this Resource's, read only the first time)."""
        if self.types is None:
            self.types = _attribute_types(attributes)
        return self.types


@dataclass
class Normaliser:
    """Turns export requests into LogBatches; keeps a small cache of source identities."""

    options: NormaliseOptions = field(default_factory=NormaliseOptions)
    _sources: dict[tuple[str, ...], Source] = field(default_factory=dict)
    _resources: dict[bytes, _Resource] = field(default_factory=dict)
    _sample_countdown: int = 0
    _severity_cache: dict[tuple[str, int], str] = field(default_factory=dict)
    # Texts of attribute values by their wire bytes (unique ids, template hints: `_looked_up`).
    _uid_texts: _TextCache = field(default_factory=_TextCache)
    _hint_texts: _TextCache = field(default_factory=_TextCache)

    def source_for(self, values: dict[str, str]) -> Source:
        """The `Source` for identity attribute values (service.name defaults to unknown_service)."""
        names = self.options.source_attributes
        key = tuple(values.get(n, "") for n in names)
        src = self._sources.get(key)
        if src is None:
            attrs = tuple((n, values[n]) for n in names if values.get(n))
            if "service.name" not in values or not values["service.name"]:
                attrs = tuple(
                    sorted(
                        (*attrs, ("service.name", UNKNOWN_SERVICE)), key=lambda a: names.index(a[0])
                    )
                )
            src = Source.from_attributes(attrs, names)
            if len(self._sources) >= _SOURCE_CACHE_MAX:
                self._sources.clear()
            self._sources[key] = src
        return src

    def resource_source(self, attributes: Iterable[KeyValue], counts: IntakeCounts) -> Source:
        """The source a Resource's attributes name (the router asks this too, so a routed part
        goes to the shard its decoder would give it)."""
        wanted = self.options.source_attributes
        values = {kv.key: render_value(kv.value) for kv in attributes if kv.key in wanted}
        if not values.get("service.name"):
            counts.missing_service_name += 1
        return self.source_for(values)

    def _resource(self, resource: Any) -> _Resource:
        """`resource_source` of a parsed Resource and its attributes' types, remembered by the
        Resource's wire bytes (serialising three attributes costs a tenth of reading them)."""
        wire = resource.SerializeToString()
        got = self._resources.get(wire)
        if got is None:
            counts = IntakeCounts()
            got = _Resource(
                self.resource_source(resource.attributes, counts), bool(counts.missing_service_name)
            )
            if len(wire) <= _RESOURCE_CACHE_BYTES:
                if len(self._resources) >= _RESOURCE_CACHE_MAX:
                    self._resources.clear()
                self._resources[wire] = got
        return got

    def from_request(
        self, request: ExportLogsServiceRequest, now_ns: int, raw: bytes | None = None
    ) -> tuple[LogBatch, IntakeCounts]:
        """Normalise every log record of `request` into one batch; `now_ns` is the receive time."""
        for one in self.batches(request, now_ns, raw):
            return one  # no limit: one batch at most
        return LogBatch(), IntakeCounts()

    def batches(
        self,
        request: ExportLogsServiceRequest,
        now_ns: int,
        raw: bytes | None = None,
        max_records: int = 0,
        *,
        parsed_from_raw: bool = False,
    ) -> Iterator[tuple[LogBatch, IntakeCounts]]:
        """Normalise `request` into batches of at most `max_records` records (0: one batch).

        One pass over the protobuf builds the columns. Only what is read downstream is built:
        no span ids or event names; trace ids stay raw bytes (`HexIds` hex-encodes the few that
        the engine keeps as samples). When the serialised request `raw` is given, the attribute
        lists are walked only if one of the wanted keys (unique ids, template hint) occurs in it
        at all: a substring search in C instead of a Python loop over every attribute. When
        `request` was parsed, unrepaired, from the protobuf `raw` (`parsed_from_raw`) of at most
        `MAP_LOOKUP_MAX_BYTES`, those attributes are looked up by key in C (`_attribute_maps`).
        Batches are cut by record count alone, so the same request always gives the same
        batches (replay gives the same anomalies for any number of shards).

        Where the compiled walker is built (`_wirewalk`), a request parsed from `raw` is walked
        in C into its records' columns, one batch's records at a time (`_walker`: the columns
        of a large request are never all held at once), the rest as below; it gives exactly
        what the Python path gives (tests/receive/test_wirewalk.py), or nothing, and then the
        Python path does the records from there on.
        """
        opts = self.options
        walker = self._walker(raw) if parsed_from_raw and raw is not None else None
        wanted = (*opts.unique_id_attributes, TEMPLATE_ATTRIBUTE)
        present: Collection[str] = wanted
        if raw is not None and walker is None:
            present = self._present(raw, wanted)
        scan = bool(present)
        limit = max_records if max_records > 0 else 1 << 62
        looked = self._looked(raw, present, parsed_from_raw) if walker is None else None
        latest = now_ns + opts.max_future_skew_ns
        # Walked columns of records [w_start, w_end) of every scope (`flat` numbering); the
        # walker is at w_end. One take is at most what the batch has room for.
        window: _Walked | None = None
        w_start = w_end = 0
        cut = _Cut(scan, walker is not None)
        flat = 0  # records before this scope's, in every scope (`looked` is indexed so)
        for rl in request.resource_logs:
            res = self._resource(rl.resource)
            src = res.source
            cut.counts.missing_service_name += res.unnamed
            seen = False
            for sl in rl.scope_logs:
                records = sl.log_records
                total = len(records)
                at, flat = flat, flat + total
                if not total:
                    continue
                if sl.scope.name == VIA_SCOPE_NAME:
                    cut.counts.loopback_ignored += total
                    continue
                seen = True
                done = 0
                while done < total:
                    take = min(total - done, limit - len(cut.bodies))
                    a = at + done
                    if walker is not None and a >= w_end:
                        window = walker.take(a - w_end, limit - len(cut.bodies))
                        if window is None or not window[0]:  # gave up (or fewer records)
                            walker = window = None
                            present = self._present(cast(bytes, raw), wanted)
                            scan = bool(present)
                            looked = self._looked(raw, present, parsed_from_raw)
                            cut.times_in_range = False  # the rows to come are not walked
                        else:
                            w_start, w_end = a, a + len(window[0])
                            # (window[6] > 0: no time 0; every time within the future bound)
                            cut.times_in_range &= window[6] > 0 and window[7] <= latest
                    if window is not None:
                        take = min(take, w_end - a)
                        self._add_walked(
                            cut, src, records, done, take, a - w_start, (res, rl.resource),
                            window,
                        )  # fmt: skip
                        if a + take == w_end:
                            window = None  # every row taken: not held while the batch is
                    else:
                        part = records if take == total else records[done : done + take]
                        found = None
                        if looked is not None:
                            found = looked[0][a : a + take], looked[1][a : a + take]
                        self._add(cut, src, part, (res, rl.resource), found)
                    done += take
                    if len(cut.bodies) >= limit:
                        yield self._finish(cut, now_ns)
                        # (times in range: the window's times, ANDed in as each is taken)
                        cut = _Cut(scan, walker is not None and window is None)
            if res.unnamed and not seen:
                cut.counts.missing_service_name -= (
                    1  # a resource with no records is not worth counting
                )
        if cut.bodies or cut.counts.loopback_ignored or cut.counts.missing_service_name:
            yield self._finish(cut, now_ns)

    @staticmethod
    def _present(raw: bytes, wanted: tuple[str, ...]) -> set[str]:
        """The keys of `wanted` that `raw` holds at all, each searched for once (a full pass
        over `raw` for every one that is absent)."""
        return {k for k in wanted if k.encode() in raw}

    def _looked(
        self, raw: bytes | None, present: Collection[str], parsed_from_raw: bool
    ) -> tuple[list[str], list[str]] | None:
        """`_looked_up` where it may be asked: a request parsed from `raw` unrepaired, of at
        most MAP_LOOKUP_MAX_BYTES, holding a wanted key."""
        if not present or not parsed_from_raw or raw is None or len(raw) > MAP_LOOKUP_MAX_BYTES:
            return None
        return self._looked_up(raw, present)

    def _add(
        self,
        cut: _Cut,
        src: Source,
        records: Sequence[Any],
        resource: tuple[_Resource, Any],
        found: tuple[list[str], list[str]] | None = None,
    ) -> None:
        idx = _source_index(cut, src)
        first = len(cut.bodies)
        cols = list(map(_RECORD_FIELDS, records))
        n = len(cols)
        body_values, sev_text, sev_num, t, tids = zip(*cols, strict=True)
        if 0 in t:  # no event time: the observed time
            t = tuple(x or lr.observed_time_unix_nano for x, lr in zip(t, records, strict=True))
        texts = _texts(body_values)
        cut.bodies.extend(texts)
        sev_cache = self._severity_cache
        # (zip hands dict.get one key tuple, reused: no list of n keys is made)
        severities: list[Any] = list(map(sev_cache.get, zip(sev_text, sev_num, strict=True)))
        if None in severities:
            for i, sev in enumerate(severities):
                if sev is None:
                    severities[i] = self._severity(sev_text[i], sev_num[i])
        cut.batch.severity.extend(severities)
        cut.times.extend(t)
        cut.add_traces(tids)
        cut.batch.source_index.extend(repeat(idx, n))
        if cut.scan:
            uids, hints = found if found is not None else self._scanned(records)
            cut.uids.extend(uids)
            cut.hints.extend(hints)
        self._sample(cut, idx, records, 0, n, resource, first)

    def _sample(
        self,
        cut: _Cut,
        idx: int,
        records: Sequence[Any],
        start: int,
        n: int,
        resource: tuple[_Resource, Any],
        first: int,
    ) -> None:
        """Schema sampling of records[start : start + n] (batch rows from `first` on): one
        record in `sample_every`, counted across requests."""
        pos = max(self._sample_countdown, 1) - 1
        if pos < n:  # the resource's (its Resource message, read only once for its bytes)
            resource_types = resource[0].types_of(resource[1].attributes)
        while pos < n:
            cut.batch.attribute_samples.append(
                AttributeSample(
                    idx,
                    _record_types(records[start + pos]),
                    resource_types,
                    first + pos,
                )
            )
            pos += self.options.sample_every
        self._sample_countdown = pos - n + 1

    def _severity(self, text: str, number: int) -> str:
        """`severity_of` through a bounded cache (`_add` looks a whole column up in it first,
        and asks this for the misses)."""
        key = (text, number)
        sev = self._severity_cache.get(key)
        if sev is None:
            sev = self._severity_cache[key] = severity_of(text, number)
            if len(self._severity_cache) > _SEVERITY_CACHE_MAX:
                self._severity_cache.clear()
        return sev

    def _walker(self, raw: bytes) -> Any:
        """A walk of `raw` (a request parsed from it unrepaired) by the compiled walker, whose
        `take(skip, n)` gives the columns of the next records, in every scope, in order: None
        where it is not built. A take gives None where it cannot say exactly what the Python
        path would (it never guesses), and so does every take after it."""
        if _walk is None:
            return None
        keys = tuple(k.encode() for k in self.options.unique_id_attributes)
        walker = _walk(
            raw, keys, TEMPLATE_ATTRIBUTE.encode(), _render_wire, _string_wire, self._severity
        )
        return _Takes(walker)

    def _add_walked(
        self,
        cut: _Cut,
        src: Source,
        records: Sequence[Any],
        start: int,
        n: int,
        at: int,
        resource: tuple[_Resource, Any],
        walked: _Walked,
    ) -> None:
        """As `_add`, for records[start : start + n], their columns taken from `walked` (from
        its row `at` on)."""
        idx = _source_index(cut, src)
        first = len(cut.bodies)
        a, b = at, at + n
        bodies, severities, times, traces, uids, hints, _, _ = walked
        cut.bodies.extend(bodies[a:b])
        cut.batch.severity.extend(severities[a:b])
        cut.times.extend(times[a:b])
        if isinstance(traces, list):
            cut.add_traces(traces[a:b])
        else:
            cut.add_packed(*traces, a, b)
        cut.batch.source_index.extend(repeat(idx, n))
        cut.uids.extend(uids[a:b])
        cut.hints.extend(hints[a:b])
        self._sample(cut, idx, records, start, n, resource, first)

    def _scanned(self, records: Sequence[Any]) -> tuple[list[str], list[str]]:
        """Each record's unique id (the first of the best-ranked unique-id key) and template
        hint (the last), by a Python loop over every attribute: the exact rule."""
        unique_keys = self.options.unique_id_attributes
        unique_set = frozenset(unique_keys)
        unique_order = {k: i for i, k in enumerate(unique_keys)}
        uids, hints = [], []
        for lr in records:
            uid, uid_rank, hint = "", len(unique_order), ""
            for kv in lr.attributes:
                k = kv.key
                if k in unique_set and unique_order[k] < uid_rank:
                    uid, uid_rank = render_value(kv.value), unique_order[k]
                elif k == TEMPLATE_ATTRIBUTE:
                    hint = kv.value.string_value
            uids.append(uid)
            hints.append(hint)
        return uids, hints

    def _looked_up(
        self, raw: bytes, present: Collection[str]
    ) -> tuple[list[str], list[str]] | None:
        """What `_scanned` gives for every record of the request `raw` (in every scope, in
        order), looked up by key in its attributes parsed as maps: C loops over records, none
        over attributes, and only for the keys `present` in `raw` at all (no record holds the
        others). None where the maps cannot say it exactly.

        A map keeps the last value of a key given twice: the hint the exact rule takes, but not
        its unique id (the first). So a unique-id key may be looked up only when no record gives
        it twice: when `raw` holds the key (`_key_count`, never fewer than its KeyValues) as
        often as records hold it; occurrences anywhere else only make us fall back. The same
        count guards the hint key, and every key against a KeyValue the maps leave out: the
        parser keeps a map entry holding a field the entry does not declare (a KeyValue's
        key_strindex, any newer field) with the record's unknown fields, not in its map. A
        map's value is read from its wire bytes (`_value_texts`), where exact.
        """
        unique_keys = self.options.unique_id_attributes
        if TEMPLATE_ATTRIBUTE in unique_keys or len(set(unique_keys)) != len(unique_keys):
            return None  # configs where the loop's rule is not "best-ranked key present"
        parsed = _attribute_maps(raw)
        if parsed is None:
            return None
        scopes = (s.items for r in parsed.items for s in r.items)
        maps = list(map(_ATTRIBUTES, chain.from_iterable(scopes)))
        n = len(maps)
        best: list[bytes | None] | None = None
        for key in unique_keys:
            if key not in present:
                continue
            column: list[bytes | None] = list(map(methodcaller("get", key), maps))
            holding = n - column.count(None)
            if _key_count(raw, key, holding) != holding:
                return None  # a key twice, its bytes elsewhere too, or an entry left out
            if not holding:
                continue
            if best is None:
                best = column
            else:
                best = [c if b is None else b for b, c in zip(best, column, strict=True)]
        uids: list[str] | None = [""] * n
        if best is not None:
            uids = _value_texts(best, self._uid_texts, render_value)
        hints: list[str] | None = [""] * n
        if TEMPLATE_ATTRIBUTE in present:
            hint_column = list(map(methodcaller("get", TEMPLATE_ATTRIBUTE), maps))
            holding = n - hint_column.count(None)
            if _key_count(raw, TEMPLATE_ATTRIBUTE, holding) != holding:
                return None
            hints = _value_texts(hint_column, self._hint_texts, _STRING_VALUE)
        if uids is None or hints is None:
            return None
        return uids, hints

    def _finish(self, cut: _Cut, now_ns: int) -> tuple[LogBatch, IntakeCounts]:
        batch, counts = cut.batch, cut.counts
        n = len(cut.bodies)
        counts.records = n
        batch.body = cut.bodies
        if n:
            latest = now_ns + self.options.max_future_skew_ns
            batch.time_ns = (
                cut.times if cut.times_in_range else _fix_times(cut.times, now_ns, latest, counts)
            )
            # A Sequence[str] like the list it replaces; read only by index.
            batch.trace_id = cast(list[str], cut.trace_ids())
            batch.unique_id = cut.uids if cut.scan else [""] * n
            batch.template_hint = cut.hints if cut.scan else [""] * n
        return batch, counts


# The compiled walker's columns: bodies, severities, times, trace ids (a list, or a blob of
# ids of one width and the width), unique ids, hints; then the least and greatest time.
_Walked = tuple[
    list[str], list[str], list[int], list[bytes] | tuple[bytes, int], list[str], list[str], int, int
]


class _Takes:
    """A walk whose callbacks' refusals (a value whose bytes do not parse alone: not bytes the
    parser took) are a take that gives up."""

    __slots__ = ("_walker",)

    def __init__(self, walker: Any) -> None:
        self._walker = walker

    def take(self, skip: int, n: int) -> _Walked | None:
        try:
            return cast(_Walked | None, self._walker.take(skip, n))
        except (DecodeError, RecursionError, ValueError):
            return None


def _render_wire(wire: bytes) -> str:
    """`render_value` of the AnyValue whose wire bytes are `wire` (the walker's callback)."""
    return render_value(AnyValue.FromString(wire))


def _string_wire(wire: bytes) -> str:
    """The string_value of the AnyValue whose wire bytes are `wire` (the walker's callback)."""
    return str(AnyValue.FromString(wire).string_value)


def _source_index(cut: _Cut, src: Source) -> int:
    """`src`'s index in the batch being filled, added on first use."""
    idx = cut.source_ids.get(src)
    if idx is None:
        idx = cut.source_ids[src] = len(cut.batch.sources)
        cut.batch.sources.append(src)
    return idx


class _Cut:
    """The batch being filled by `Normaliser.batches`."""

    def __init__(self, scan: bool, times_in_range: bool = False) -> None:
        self.batch = LogBatch()
        self.counts = IntakeCounts()
        self.scan = scan
        self.times_in_range = times_in_range  # no time 0 or past the future bound: none to fix
        self.source_ids: dict[Source, int] = {}
        self.bodies: list[str] = []
        self.times: list[int] = []
        self.traces: list[bytes] = []
        # Or, while every trace id is one stretch of a walked request's blob of ids of one
        # width: [blob, width, first, end] (ids first..end-1), instead of `traces`.
        self.packed: list[Any] | None = None
        self.uids: list[str] = []
        self.hints: list[str] = []

    def add_traces(self, ids: Iterable[bytes]) -> None:
        """Trace ids for the rows just added (the packed ones before them made a list)."""
        if self.packed is not None:
            self.traces.extend(_ids_of(*self.packed))
            self.packed = None
        self.traces.extend(ids)

    def add_packed(self, blob: bytes, width: int, first: int, end: int) -> None:
        """Trace ids first..end-1 of `blob` (ids `width` bytes wide), for the rows just added."""
        packed = self.packed
        if packed is not None and packed[0] is blob and packed[3] == first:
            packed[3] = end
        elif packed is None and not self.traces and len(self.bodies) == end - first:
            self.packed = [blob, width, first, end]
        else:
            if packed is not None:
                self.traces.extend(_ids_of(*packed))
                self.packed = None
            self.traces.extend(_ids_of(blob, width, first, end))

    def trace_ids(self) -> HexIds:
        """The trace ids, as `HexIds.of(traces)` gives them."""
        if self.packed is None:
            return HexIds.of(self.traces)
        blob, width, first, end = self.packed
        return HexIds.packed(blob[first * width : end * width], width, end - first)


def _ids_of(blob: bytes, width: int, first: int, end: int) -> list[bytes]:
    """Ids first..end-1 of `blob`, ids `width` bytes wide, as byte strings."""
    return [blob[i : i + width] for i in range(first * width, end * width, width)]


_SEVERITY_CACHE_MAX = 1024


def _fix_times(times: list[int], now_ns: int, latest: int, counts: IntakeCounts) -> list[int]:
    """Event times with 0 (no time at all) and far-future ones replaced by the receive time."""
    t = np.asarray(times, dtype=np.uint64)
    missing = t == 0
    future = t > latest
    n_missing = int(np.count_nonzero(missing))
    n_future = int(np.count_nonzero(future))
    if not (n_missing or n_future):
        return times
    counts.missing_timestamp += n_missing
    counts.future_clamped += n_future
    t[missing | future] = now_ns
    fixed: list[int] = t.tolist()
    return fixed


class HexIds(Sequence[str]):
    """Trace ids kept as the sender's bytes, hex-encoded only when read ("" when absent).

    A batch keeps a handful of trace ids per group as samples; encoding all of them up front was
    a tenth of the intake's time. Ids of one width that came off the wire stay one blob
    (`packed`): the list of byte strings is made only if something asks for it (`raw`).

    >>> ids = HexIds([b"\\x01\\xff", b""])
    >>> ids[0], ids[1], len(ids), list(ids)
    ('01ff', '', 2, ['01ff', ''])
    >>> packed = HexIds.packed(b"\\x01\\xff\\x02\\x03", 2, 2)
    >>> packed[1], list(packed), packed.raw, packed == HexIds([b"\\x01\\xff", b"\\x02\\x03"])
    ('0203', ['01ff', '0203'], [b'\\x01\\xff', b'\\x02\\x03'], True)
    >>> HexIds.packed(b"\\x01\\xff\\x02\\x03", 2, 2).hex_at(np.array([1, 0, 1]))
    ['0203', '01ff', '0203']
    >>> HexIds.of([b"\\x01\\xff", b"\\x02\\x03"]).blob(), HexIds.of([b"\\x01", b""]).blob()
    ((b'\\x01\\xff\\x02\\x03', 2), None)
    """

    __slots__ = ("_blob", "_n", "_raw", "_width")

    def __init__(self, raw: list[bytes]) -> None:
        self._raw: list[bytes] | None = raw
        self._blob = b""
        self._width = 0
        self._n = len(raw)

    @classmethod
    def of(cls, raw: list[bytes]) -> HexIds:
        """`raw` as one blob when every id has the same width (ids off the wire mostly do:
        their parts and joins are then gathered in C, never split into a list), else as is."""
        widths = set(map(len, raw))
        if len(widths) == 1:
            width = widths.pop()
            if width:
                return cls.packed(b"".join(raw), width, len(raw))
        return cls(raw)

    @classmethod
    def packed(cls, blob: bytes, width: int, n: int) -> HexIds:
        """`n` ids of `width` bytes each, one after the other in `blob`."""
        ids = cls([])
        ids._raw, ids._blob, ids._width, ids._n = None, blob, width, n
        return ids

    @property
    def raw(self) -> list[bytes]:
        """The ids as byte strings (b"" when absent)."""
        if self._raw is None:
            blob, w = self._blob, self._width
            self._raw = [blob[i : i + w] for i in range(0, self._n * w, w)]
        return self._raw

    def blob(self) -> tuple[bytes, int] | None:
        """(blob, width) of packed ids, None for a list."""
        return (self._blob, self._width) if self._raw is None else None

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes the ids hold (before hex encoding)."""
        return len(self._blob) if self._raw is None else sum(map(len, self._raw))

    def hex_at(self, idx: np.ndarray) -> list[str]:
        """The ids at `idx`, hex-encoded: for packed ids one gather and one encoding in numpy
        (the engine's trace samples; per id, this was slower than the list it replaced)."""
        if self._raw is not None or not len(idx):
            return [self._raw[i].hex() for i in idx.tolist()] if self._raw is not None else []
        w = self._width
        text = np.frombuffer(self._blob, np.uint8).reshape(-1, w)[idx].tobytes().hex()
        step = 2 * w
        return [text[i : i + step] for i in range(0, len(text), step)]

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [b.hex() for b in self.raw[i]]
        if self._raw is not None:
            return self._raw[i].hex()
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("trace id index out of range")
        w = self._width
        return self._blob[i * w : i * w + w].hex()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HexIds):
            return self.raw == other.raw
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


# `value_type` by the name of the AnyValue field set (None: none).
_TYPE_NAMES: dict[str | None, str] = {
    None: "empty",
    **{f.name: f.name[:-6] for f in AnyValue.DESCRIPTOR.oneofs_by_name["value"].fields},
}


def _any_value_tables() -> tuple[bytes, tuple[str, ...]]:
    """For the compiled `attribute_types`: the wire type of each AnyValue field of its `value`
    oneof by field number (0xFF: none such), and its type name (`value_type`; [0]: none)."""
    fd = descriptor_pb2.FieldDescriptorProto
    wire_of = {fd.TYPE_DOUBLE: 1, fd.TYPE_FIXED64: 1, fd.TYPE_SFIXED64: 1, fd.TYPE_FLOAT: 5,
               fd.TYPE_FIXED32: 5, fd.TYPE_SFIXED32: 5, fd.TYPE_STRING: 2, fd.TYPE_BYTES: 2,
               fd.TYPE_MESSAGE: 2}  # fmt: skip
    fields = {f.number: f for f in AnyValue.DESCRIPTOR.oneofs_by_name["value"].fields}
    wire = bytearray([0xFF]) * (max(fields) + 1)
    names = ["empty"] + [""] * max(fields)
    for number, f in fields.items():
        wire[number] = wire_of.get(f.type, 0)  # (every other scalar is a varint)
        names[number] = _TYPE_NAMES[f.name]
    return bytes(wire), tuple(names)


_WIRE_TYPES, _NAME_OF_FIELD = _any_value_tables()
_types_in_c: Callable[[bytes, bytes, tuple[str, ...]], Any] | None = getattr(
    _wirewalk_module, "attribute_types", None
)


def _record_types(record: Any) -> tuple[tuple[str, str], ...]:
    """`_attribute_types` of a parsed LogRecord's attributes: read in C from the record
    serialised again (about a third of the accessors' cost), else through them."""
    if _types_in_c is not None:
        got = _types_in_c(record.SerializeToString(), _WIRE_TYPES, _NAME_OF_FIELD)
        if got is not None:
            return cast(tuple[tuple[str, str], ...], got)
    return _attribute_types(record.attributes)


def _attribute_types(attrs: Iterable[KeyValue]) -> tuple[tuple[str, str], ...]:
    """(key, value type) of each attribute, as a schema sample lists them (`value_type`)."""
    names = _TYPE_NAMES
    return tuple([(kv.key, names[kv.value.WhichOneof("value")]) for kv in attrs])
