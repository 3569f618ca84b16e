"""The compiled walker (`_wirewalk`) against the pure-Python path it speeds up: same batches.

Every request is normalised twice, by the same `Normaliser.batches` with the walker and
without it (the reference), and the two must agree in every column, count, sample and
encoded byte, over realistic requests of many shapes and over thousands of mutated or
truncated copies of them. The walker is also handed those bytes directly, whether the
protobuf parser takes them or not: it may give up, never crash.

By hand, more cases: `python tests/receive/test_wirewalk.py 100000 [seed]`.
"""

from __future__ import annotations

import base64
import gc
import logging
import random
import shutil
import sys
import sysconfig
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from via_otlp.errors import InputError
from via_otlp.model import TEMPLATE_ATTRIBUTE, VIA_SCOPE_NAME
from via_otlp.receive import normalise
from via_otlp.receive.normalise import NormaliseOptions, Normaliser
from via_otlp.receive.otlp_codec import decode_protobuf
from via_otlp.shard.wire import encode_batch

NOW = 1_800_000_000 * 10**9
UNIQUE_KEYS = ("user.id", "enduser.id", "session.id")
OPTIONS = [
    NormaliseOptions(unique_id_attributes=UNIQUE_KEYS, sample_every=3),
    NormaliseOptions(),
    # a key listed twice, the hint key among the unique ones, an empty key
    NormaliseOptions(
        unique_id_attributes=("session.id", "user.id", "session.id", TEMPLATE_ATTRIBUTE, ""),
        sample_every=1,
    ),
]


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("gcc")


def test_the_walker_is_built_wherever_a_compiler_is() -> None:
    if _compiler() is None:
        pytest.skip("no C compiler here: normalisation runs in Python (the reference)")
    assert normalise._walk is not None, (
        "via_otlp/receive/_wirewalk.c is not built, or is a stale build: "
        "run `pip install -e .` (setup.py builds it)"
    )
    from via_otlp.receive import _wirewalk

    assert _wirewalk.ABI_VERSION == normalise.WALKER_ABI
    assert normalise._walk is _wirewalk.Walk
    assert _wirewalk.MAX_RENDER_DEPTH == normalise.MAX_RENDER_DEPTH


def test_ids_are_hashed_in_c_as_xxhash_hashes_them() -> None:
    """`xxh64_utf8` (the engine's distinct-id hashes, `detect.engine._hash_ids`) gives
    `xxh64_intdigest(s.encode())` for every length around XXH64's 4-, 8- and 32-byte steps and
    any UTF-8, and fails where `str.encode` fails."""
    if _compiler() is None:
        pytest.skip("no C compiler here: the ids are hashed in Python")
    import numpy as np
    import xxhash

    from via_otlp.detect import engine, samples
    from via_otlp.receive import _wirewalk

    rng = random.Random(3)
    alphabet = "ab09-_ \x00\néß€😀"
    ids = ["", "a", "user1199"] + [
        "".join(rng.choice(alphabet) for _ in range(n)) for n in range(80) for _ in range(20)
    ]
    want = np.array([xxhash.xxh64_intdigest(s.encode()) for s in ids], dtype=np.uint64)
    assert np.array_equal(np.frombuffer(_wirewalk.xxh64_utf8(ids), dtype=np.uint64), want)
    assert samples._xxh64_utf8 is _wirewalk.xxh64_utf8
    assert np.array_equal(engine._hash_ids(ids), want)
    with pytest.raises(UnicodeEncodeError):
        _wirewalk.xxh64_utf8(["ok", "\ud800"])
    with pytest.raises(TypeError):
        _wirewalk.xxh64_utf8(["ok", b"not a str"])  # type: ignore[list-item]


def test_a_build_of_another_interface_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An editable install keeps its old .so on `git pull`: one whose results normalise does not
    read (71b1e9f's 8 columns read from a 6-column build: IndexError on every request) must
    leave normalisation to Python, and say to rebuild."""

    class Walk:  # stands for the module's walker: never called here
        pass

    current = SimpleNamespace(ABI_VERSION=normalise.WALKER_ABI, Walk=Walk)
    assert normalise.walker_of(current) is Walk
    assert not caplog.records
    for stale in (
        SimpleNamespace(ABI_VERSION=normalise.WALKER_ABI - 1, Walk=Walk),
        SimpleNamespace(walk=Walk, MAX_RENDER_DEPTH=16),  # the first builds had no version
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=normalise.__name__):
            assert normalise.walker_of(stale) is None
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "pip install -e ." in caplog.records[0].getMessage()


def test_the_image_build_compiles_the_walker() -> None:
    """The Dockerfile's wheel has the walker: setup.py in the build context and the source
    layer, and a C compiler in the build stage (optional=True would build without it, silently)."""
    repo = Path(__file__).resolve().parents[2]
    dockerfile = (repo / "Dockerfile").read_text()
    build_stage = dockerfile[: dockerfile.index("FROM", dockerfile.index("AS build"))]
    assert "gcc" in build_stage and "COPY setup.py" in build_stage
    assert "!setup.py" in (repo / ".dockerignore").read_text().split()


# -- requests -----------------------------------------------------------------------------


def _value(rng: random.Random, depth: int = 0) -> AnyValue:
    v = AnyValue()
    kind = rng.randrange(12 if depth < 40 else 8)
    if kind <= 2:
        v.string_value = rng.choice(
            [
                "",
                "x",
                "héllo wörld ✓",
                "a\x00b",
                "😀" * 3,
                "user 42",
                'q"\\/\n\r\t\b\f\x1f\x7f\u2028',
            ]
        )
    elif kind == 3:
        v.int_value = rng.choice([0, 1, -1, 2**63 - 1, -(2**63), 12345])
    elif kind == 4:
        v.double_value = rng.choice(
            [0.0, -0.0, 1.5, 1e300, float("inf"), -float("inf"), float("nan"), 1 / 3, 1e16, 5e-324]
        )
    elif kind == 5:
        v.bool_value = rng.random() < 0.5
    elif kind == 6:
        v.bytes_value = rng.randbytes(rng.randrange(5))
    elif kind == 7:
        pass  # no value at all
    elif kind <= 9:
        v.array_value.SetInParent()
        for _ in range(rng.randrange(3)):
            v.array_value.values.append(_value(rng, depth + 1))
    else:
        v.kvlist_value.SetInParent()
        for _ in range(rng.randrange(3)):
            kv = v.kvlist_value.values.add(key=rng.choice(["b", "a", "ключ", ""]))
            kv.value.CopyFrom(_value(rng, depth + 1))
    return v


def _deep(v: AnyValue, levels: int) -> None:
    """`v` made `levels` deep, in place (a copy of a value past the parser's depth fails)."""
    inner = v
    for i in range(levels):
        inner = (
            inner.array_value.values.add()
            if i % 2
            else inner.kvlist_value.values.add(key="k").value
        )
    inner.string_value = "leaf"


KEYS = [*UNIQUE_KEYS, TEMPLATE_ATTRIBUTE, "http.method", "user.idx", "", "enduser.id.extra"]


def _record(
    rng: random.Random, uniform_ids: bool = False, lr: LogRecord | None = None
) -> LogRecord:
    """A random record (filled into `lr`, when given)."""
    lr = LogRecord() if lr is None else lr
    if rng.random() < 0.8:
        lr.time_unix_nano = rng.choice([NOW - rng.randrange(10**12), NOW + 10**15, 1, 2**64 - 1])
    if rng.random() < 0.5:
        lr.observed_time_unix_nano = NOW - rng.randrange(10**9)
    if rng.random() < 0.8:
        lr.severity_number = rng.choice([0, 1, 9, 13, 17, 21, 24, 25, 99, 2**31 - 1])  # type: ignore[assignment]
    if rng.random() < 0.7:
        lr.severity_text = rng.choice(
            ["INFO", "warning", " Error ", "notice2", "", "x" * 40, "débug", "CRIT"]
        )
    shape = rng.random()
    if shape < 0.55:
        lr.body.string_value = rng.choice(["GET /x 200", "", "ünïcode ✓", "user 7 logged in"])
    elif shape < 0.9:
        lr.body.CopyFrom(_value(rng))
    elif shape < 0.95:
        _deep(lr.body, rng.choice([5, 17, 30, 45]))  # 45: past the parser's depth
    for _ in range(rng.randrange(6)):
        kv = lr.attributes.add(key=rng.choice(KEYS))
        if rng.random() < 0.6:
            kv.value.string_value = rng.choice(["u1", "u2", "", "ü", "hint {n}"])
        elif rng.random() < 0.9:
            kv.value.CopyFrom(_value(rng))
    if uniform_ids:  # as SDKs send them: every record's 16 bytes (the walker packs them)
        lr.trace_id = rng.randbytes(16)
    elif rng.random() < 0.8:
        lr.trace_id = rng.choice([rng.randbytes(16), b"", rng.randbytes(3), rng.randbytes(300)])
    if rng.random() < 0.3:
        lr.span_id = rng.randbytes(8)
    if rng.random() < 0.2:
        lr.event_name = "evt"
    if rng.random() < 0.1:
        lr.flags = 1
    return lr


def _request(rng: random.Random) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    uniform_ids = rng.random() < 0.5
    for _ in range(rng.randrange(1, 4)):
        rl = req.resource_logs.add()
        if rng.random() < 0.85:
            rl.resource.attributes.add(key="service.name").value.string_value = rng.choice(
                ["checkout", "cart", "", "ßervice"]
            )
        if rng.random() < 0.3:
            rl.resource.attributes.add(key="service.namespace").value.int_value = 3
        for _ in range(rng.randrange(0, 3)):
            sl = rl.scope_logs.add()
            if rng.random() < 0.1:
                sl.scope.name = VIA_SCOPE_NAME
            for _ in range(rng.randrange(0, 8)):
                _record(rng, uniform_ids, sl.log_records.add())
    return req


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _wrapped(records: list[bytes]) -> bytes:
    """A request of one resource and scope holding these LogRecords' bytes as they are."""
    resource = _field(1, _field(1, KeyValue(key="service.name").SerializeToString()))
    scope = b"".join(_field(2, r) for r in records)
    return _field(1, resource + _field(2, scope))


def _odd_wire(rng: random.Random) -> bytes:
    """Records a serializer does not write but a parser takes: fields given twice (merged or
    last-wins), a key after its value, long varints, fields of other wire types, unknown ones."""
    out = []
    for _ in range(rng.randrange(1, 6)):
        lr = _record(rng).SerializeToString()
        extra = rng.choice([
            _field(5, AnyValue(string_value="second body").SerializeToString()),
            _field(5, _value(rng).SerializeToString()),
            _field(3, b"ERROR"),
            _field(9, b"\x01" * 16),
            b"\x09" + (NOW + 5).to_bytes(8, "little"),  # time again: the last wins
            b"\x08\x05",  # time as a varint: another wire type
            b"\x10\x91\x80\x80\x80\x00",  # severity 17 in a long varint
            b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # severity -1
            _field(6, _field(2, AnyValue(string_value="late").SerializeToString())
                   + _field(1, b"user.id")),  # the key after its value
            _field(6, _field(1, b"user.id") + _field(2, b"\x0a\x01a") + _field(2, b"\x18\x05")),
            _field(6, _field(1, b"user.id") + _field(1, b"session.id") + _field(2, b"\x0a\x01s")),
            _field(6, _field(1, b"user.id") + _field(2, b"\x0a\x81\x00z")),  # long length
            _field(6, _field(1, TEMPLATE_ATTRIBUTE.encode()) + _field(2, b"\x18\x07")),
            _field(6, _field(1, b"user.id") + _field(2, b"\x10\x02")),  # bool
            _field(6, _field(1, b"user.id") + _field(2, b"\x0a\x01a\x0a\x01b")),
            _field(6, _field(1, b"user.id") + _field(2, b"\x40\x01")),  # strindex
            b"\xf8\x01\x05",  # unknown field 31, varint
            b"\x9d\x01\x01\x02\x03\x04",  # unknown field 19, fixed32
            b"",
        ])  # fmt: skip
        out.append(lr + extra if rng.random() < 0.7 else extra + lr)
    return _wrapped(out)


def requests(rng: random.Random, n: int) -> list[bytes]:
    """`n` request bodies: mostly realistic, some shaped on the wire by hand."""
    out = []
    for _ in range(n):
        if rng.random() < 0.75:
            out.append(_request(rng).SerializeToString())
        else:
            out.append(_odd_wire(rng))
    return out


def mutated(rng: random.Random, raw: bytes) -> bytes:
    """`raw` with a few random bytes changed, cut, inserted, or a stretch repeated."""
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        if not data:
            data = bytearray(rng.randbytes(rng.randrange(1, 20)))
        op = rng.randrange(5)
        at = rng.randrange(len(data))
        if op == 0:
            data[at] = rng.randrange(256)
        elif op == 1:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 2:
            del data[at:]
        elif op == 3:
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
        else:
            data[at:at] = data[at : at + rng.randrange(1, 40)]
    return bytes(data)


# -- comparing ----------------------------------------------------------------------------


def _outcomes(raws: list[bytes], options: NormaliseOptions, max_records: int) -> list[Any]:
    """What each request gives, normalised in turn by one Normaliser (its state carries)."""
    n = Normaliser(options)
    out: list[Any] = []
    for raw in raws:
        try:
            message, repairs = decode_protobuf(raw)
        except InputError as exc:
            out.append(("refused", str(exc)))
            continue
        got = []
        for batch, counts in n.batches(message, NOW, raw, max_records, parsed_from_raw=not repairs):
            got.append((
                encode_batch(batch),
                batch.sources,
                batch.source_index,
                batch.severity,
                batch.body,
                batch.time_ns,
                list(batch.trace_id),
                [*batch.trace_id.raw] if hasattr(batch.trace_id, "raw") else None,
                batch.unique_id,
                batch.template_hint,
                batch.attribute_samples,
                vars(counts),
            ))  # fmt: skip
        out.append(("batches", got))
    return out


class _Counted:
    """The walker, counting the requests it walked and those it gave up on (a take gave None)."""

    def __init__(self, walk: Callable[..., Any]) -> None:
        self.walk, self.calls, self.gave_up = walk, 0, 0

    @property
    def walked(self) -> int:
        return self.calls - self.gave_up

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return _CountedWalk(self, self.walk(*args))


class _CountedWalk:
    def __init__(self, counted: _Counted, walker: Any) -> None:
        self.counted, self.walker, self.over = counted, walker, False

    def take(self, skip: int, n: int) -> Any:
        try:
            got = self.walker.take(skip, n)
        except Exception:
            got = None
            raise
        finally:
            if got is None and not self.over:
                self.over = True
                self.counted.gave_up += 1
        return got


def compare(raws: list[bytes], options: NormaliseOptions, max_records: int) -> _Counted:
    """Asserts the walker and the Python path agree on every request of `raws`."""
    walk = normalise._walk
    assert walk is not None
    counted = _Counted(walk)
    try:
        normalise._walk = None
        expected = _outcomes(raws, options, max_records)
        normalise._walk = counted
        got = _outcomes(raws, options, max_records)
    finally:
        normalise._walk = walk
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"request {i}: {base64.b64encode(raws[i]).decode()}"
    return counted


def walk_directly(raw: bytes, options: NormaliseOptions, steps: list[int] | None = None) -> Any:
    """The walker on any bytes, as `Normaliser._walker` makes it: the columns of every record,
    None, or an error from a callback on a value that does not parse (only in bytes the parser
    refused). With `steps`, taken in takes of those sizes (then the rest), and joined."""
    n = Normaliser(options)
    walk = normalise._walk
    assert walk is not None
    keys = tuple(k.encode() for k in options.unique_id_attributes)
    walker = walk(
        raw,
        keys,
        TEMPLATE_ATTRIBUTE.encode(),
        normalise._render_wire,
        normalise._string_wire,
        n._severity,
    )
    takes = []
    try:
        for size in [*(steps or []), sys.maxsize]:
            got = walker.take(0, size)
            if got is None:
                assert walker.take(0, 1) is None  # a walk given up stays given up
                return None
            takes.append(got)
    except (DecodeError, RecursionError, ValueError):
        assert walker.take(0, 1) is None
        return "callback refused"
    assert walker.take(0, 1)[0] == []  # nothing after the end
    if len(takes) == 1:
        return takes[0]
    columns: list[Any] = [[] for _ in range(6)]
    for got in takes:
        for column, part in zip(columns, got[:6], strict=False):
            column.extend(_ids_of(part) if isinstance(part, tuple) else part)
    times = [t for got in takes for t in got[2]]
    return (*columns, min(times, default=0), max(times, default=0))


def _ids_of(packed: tuple[bytes, int]) -> list[bytes]:
    blob, width = packed
    return [blob[i : i + width] for i in range(0, len(blob), width)]


def _joined(got: Any) -> Any:
    """`walk_directly`'s columns with the trace ids as a list, as takes in steps join them."""
    if not isinstance(got, tuple) or not isinstance(got[3], tuple):
        return got
    return (*got[:3], _ids_of(got[3]), *got[4:])


built = pytest.mark.skipif(normalise._walk is None, reason="asserted by the test above")


@built
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("max_records", [0, 4])
def test_realistic_requests_give_the_same_batches(
    options: NormaliseOptions, max_records: int
) -> None:
    rng = random.Random(13)
    counted = compare(requests(rng, 150), options, max_records)
    # The walker must actually do the work on most of them, not give up on everything.
    assert counted.walked >= 0.6 * counted.calls > 0


@built
def test_the_attribute_loop_gives_what_the_walker_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference above looks attributes up by key where it can; here, by its loop."""
    monkeypatch.setattr(normalise, "MAP_LOOKUP_MAX_BYTES", 0)
    counted = compare(requests(random.Random(5), 100), OPTIONS[0], 0)
    assert counted.walked >= 0.6 * counted.calls > 0


def test_a_key_value_with_a_field_the_maps_do_not_declare_keeps_its_id_and_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Python path's lookup by key (`_looked_up`) lost such a KeyValue (found by the walker's
    fuzz): the parser keeps its map entry with the unknown fields. It must fall back instead."""
    monkeypatch.setattr(normalise, "_walk", None)
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    odd = sl.log_records.add().attributes
    odd.add(key="user.id", key_strindex=3).value.string_value = "a"
    odd.add(key=TEMPLATE_ATTRIBUTE, key_strindex=3).value.string_value = "t"
    sl.log_records.add().attributes.add(key=TEMPLATE_ATTRIBUTE).value.string_value = "u"
    raw = req.SerializeToString()
    assert Normaliser()._looked_up(raw, {"user.id", TEMPLATE_ATTRIBUTE}) is None
    batch, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert (batch.unique_id, batch.template_hint) == (["a", ""], ["t", "u"])


@built
@pytest.mark.parametrize("max_records", [0, 2])
def test_odd_wire_is_walked_or_left_to_python_alike(max_records: int) -> None:
    """Records written by hand: merged bodies (the walker gives up), a key after its value,
    values given twice in one KeyValue, long varints, a severity of -1, unknown fields. In
    batches of 2, a request the walker gives up on part way is finished by Python."""
    rng = random.Random(7)
    raws = [_odd_wire(rng) for _ in range(300)]
    counted = compare(raws, OPTIONS[0], max_records)
    assert 0 < counted.walked < counted.calls  # some walked, some left to Python


@built
def test_a_known_request_gives_known_columns() -> None:
    """The columns themselves, so that a walker and a Python path both wrong cannot pass."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    lr = rl.scope_logs.add().log_records.add(
        severity_text="warning", observed_time_unix_nano=NOW - 5, trace_id=b"\xab\xcd"
    )
    lr.body.kvlist_value.values.add(key="b").value.int_value = 2
    lr.attributes.add(key="session.id").value.int_value = -7
    lr.attributes.add(key="user.id").value.string_value = "ü1"
    lr.attributes.add(key="user.id").value.string_value = "second"
    lr.attributes.add(key=TEMPLATE_ATTRIBUTE).value.string_value = "first"
    lr.attributes.add(key=TEMPLATE_ATTRIBUTE).value.string_value = "last"
    raw = req.SerializeToString()
    got = walk_directly(raw, NormaliseOptions(unique_id_attributes=UNIQUE_KEYS))
    columns = (
        ['{"b":2}'],
        ["WARN"],
        [NOW - 5],
        (b"\xab\xcd", 2),
        ["ü1"],
        ["last"],
        NOW - 5,
        NOW - 5,
    )
    assert got == columns
    got = walk_directly(raw, NormaliseOptions(unique_id_attributes=("session.id",)))
    assert got[4] == ["-7"]


@built
def test_structured_bodies_are_rendered_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """kvlist and array bodies (sorted keys, the last of a key given twice, JSON escapes,
    float reprs, "…" past the depth) come out of the walker without asking Python."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    lr = rl.scope_logs.add().log_records.add()
    values = lr.body.kvlist_value.values
    values.add(key="b").value.double_value = 1.5
    array = values.add(key="a").value.array_value.values
    array.add().bool_value = True
    array.add()  # no value: null
    array.add().string_value = 'q"\\\n\x01ü'
    array.add().double_value = -0.0
    array.add().double_value = float("inf")
    array.add().int_value = -(2**63)
    values.add(key="b").value.int_value = 2
    values.add(key="ü").value.kvlist_value.values.add(key="x").value.double_value = 1e300
    _deep(values.add(key="deep").value, 20)
    raw = req.SerializeToString()
    expected = normalise.render_value(lr.body)

    def python_asked(wire: bytes) -> str:
        raise AssertionError("the walker asked Python to render a value it renders itself")

    monkeypatch.setattr(normalise, "_render_wire", python_asked)
    got = walk_directly(raw, NormaliseOptions())
    assert got[0] == [expected]
    assert expected.startswith(
        '{"a":[true,null,"q\\"\\\\\\n\\u0001ü",-0.0,"inf",-9223372036854775808],"b":2,'
    )


@built
@pytest.mark.parametrize("options", OPTIONS[:2])
def test_mutated_bytes_give_the_same_answer_and_never_crash(options: NormaliseOptions) -> None:
    rng = random.Random(42)
    seeds = requests(rng, 40)
    raws = [mutated(rng, rng.choice(seeds)) for _ in range(1500)]
    for raw in raws:
        got = walk_directly(raw, options)
        assert got is None or got == "callback refused" or len(got) == 8
        # taken a few records at a time: the same records, or a refusal (a callback's
        # refusal may come first then: a take asks them once it has walked its records)
        steps = [rng.randrange(4) for _ in range(rng.randrange(1, 6))]
        stepped = walk_directly(raw, options, steps)
        refusals = (None, "callback refused")
        assert stepped in refusals if got in refusals else stepped == _joined(got)
    counted = compare(raws, options, 3)
    assert counted.walked > 50  # mutants the parser took, walked to the end


@built
def test_a_batch_of_two_takes_keeps_every_trace_id() -> None:
    """A loopback scope inside a batch makes the walker's take end before the batch does: the
    batch's rows come from two takes, or from a take and then Python (the walker gave up), and
    ids of one width (one blob) in the first are followed by a list in the second."""
    raws = []
    merged = _field(5, AnyValue(string_value="merged").SerializeToString()) * 2
    for last in (b"", b"\x01\x02", b"\x01\x02\x03"):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.scope_logs.add().log_records.add(trace_id=b"\xaa\xbb\xcc")
        loopback = rl.scope_logs.add()
        loopback.scope.name = VIA_SCOPE_NAME
        loopback.log_records.add(trace_id=b"\xdd\xee\xff")
        loopback.log_records.add(trace_id=b"\xdd\xee\xff")  # the first take ends here
        first = LogRecord(trace_id=last).SerializeToString()
        second = LogRecord(trace_id=b"\x11\x22\x33").SerializeToString()
        for tail in (b"", merged):  # the second: the walker gives up on that record
            scope = _field(2, first) + _field(2, second + tail)
            raws.append(req.SerializeToString() + _field(1, _field(2, scope)))
    counted = compare(raws, OPTIONS[0], 3)
    assert counted.walked == 3 and counted.gave_up == 3


def _small_records(n: int) -> ExportLogsServiceRequest:
    """One scope of `n` records of a short distinct body and a time each (what costs the
    walker most memory per request byte: a str and an int per 25 bytes)."""
    req = ExportLogsServiceRequest()
    records = req.resource_logs.add().scope_logs.add().log_records
    for i in range(n):
        records.add(time_unix_nano=NOW - i).body.string_value = f"{i:012d}"
    return req


def _peak(message: ExportLogsServiceRequest, raw: bytes, max_records: int) -> tuple[int, int]:
    """(Records, bytes allocated at the peak) of normalising `message` in batches that are
    dropped as they come (as the shard worker does), counted by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        records = 0
        for batch, _ in Normaliser().batches(message, NOW, raw, max_records, parsed_from_raw=True):
            records += len(batch.body)
            del batch
        return records, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@built
def test_a_large_request_is_walked_one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker holds one batch's columns at a time, as the Python path does: walking every
    record before the first batch held them all (+215 MiB for a 32 MiB request, +11 without)."""
    message = _small_records(40_000)
    raw = message.SerializeToString()
    walked = _peak(message, raw, 1000)
    monkeypatch.setattr(normalise, "_walk", None)
    python = _peak(message, raw, 1000)
    assert walked[0] == python[0] == 40_000
    # All 40 batches' columns at once would be about 40 times one batch's (measured: 4.2 MB
    # against 0.24 MB for the Python path; one batch at a time, 0.17 MB)
    assert walked[1] < 2 * python[1], (walked[1], python[1])


@built
def test_a_request_given_up_at_its_end_asks_python_for_each_value_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walker asks Python for the values it cannot render (bytes) only once its take has
    walked every record: a take it gives up on, at the last record, asked nothing, and the
    Python path that does them instead renders each body once."""
    req = ExportLogsServiceRequest()
    records = req.resource_logs.add().scope_logs.add().log_records
    for i in range(50):
        records.add().body.bytes_value = bytes([i])
    last = records[-1].SerializeToString()
    body = _field(5, AnyValue(string_value="merged").SerializeToString())
    raw = _wrapped([r.SerializeToString() for r in records[:-1]] + [last + body])
    message, repairs = decode_protobuf(raw)
    assert not repairs
    asked: list[bytes] = []
    render = normalise._render_wire

    def counted(wire: bytes) -> str:
        asked.append(wire)
        return render(wire)

    monkeypatch.setattr(normalise, "_render_wire", counted)
    rendered = []
    real = normalise.render_value

    def render_value(value: AnyValue) -> str:
        rendered.append(value)
        return real(value)

    monkeypatch.setattr(normalise, "render_value", render_value)
    (batch, _), *more = Normaliser().batches(message, NOW, raw, parsed_from_raw=True)
    assert not more and len(batch.body) == 50
    assert batch.body[:2] == ["AA==", "AQ=="]  # base64, as the Python path renders bytes
    assert asked == []  # (it had asked for the 49 bytes bodies)
    on = len(rendered)
    rendered.clear()
    monkeypatch.setattr(normalise, "_walk", None)
    (by_python, _), *_ = Normaliser().batches(message, NOW, raw, parsed_from_raw=True)
    assert by_python == batch
    assert len(rendered) == on >= 49  # the 49 bytes bodies, rendered once


def main(cases: int, seed: int) -> None:
    """`cases` mutants, in rounds of 1,000, each compared and walked directly."""
    rng = random.Random(seed)
    done = walked = 0
    while done < cases:
        options = OPTIONS[done // 1000 % len(OPTIONS)]
        seeds = requests(rng, 40)
        raws = [mutated(rng, rng.choice(seeds)) for _ in range(1000)] + seeds
        for raw in raws:
            walk_directly(raw, options)
        walked += compare(raws, options, rng.choice([0, 3])).walked
        done += 1000
        print(f"{done} mutants compared, {walked} walked by C to the end", flush=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 10_000,
        int(sys.argv[2:3][0] if sys.argv[2:] else 2026),
    )


def _records_of(raw: bytes) -> list[LogRecord]:
    try:
        req = ExportLogsServiceRequest.FromString(raw)
    except DecodeError:
        return []
    return [lr for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]


@built
def test_a_sampled_record_s_attribute_types_read_in_c_are_the_accessors_ones() -> None:
    """A schema sample's attribute types are read in C from the record serialised again
    (`_record_types`): the same as through the accessors, over realistic and mutated
    records and odd wire (unknown fields, a value of another wire type, no value), or None
    (then Python reads them)."""
    assert normalise._types_in_c is not None, (
        "via_otlp/receive/_wirewalk.c is a build without attribute_types: rebuild it "
        "(`python setup.py build_ext --inplace`, or `pip install -e .`)"
    )
    rng = random.Random(5)
    seeds = requests(rng, 30)
    records = [lr for raw in seeds for lr in _records_of(raw)]
    records += [lr for _ in range(600) for lr in _records_of(mutated(rng, rng.choice(seeds)))]
    odd_values = [
        b"",  # no value set: "empty"
        b"\x08\x01",  # field 1 (string_value) as a varint: unknown to the parser
        b"\x10\x01" + _field(1, b"s"),  # bool, then string: the last set wins
        b"\x19" + bytes(8),  # double 0.0
        _field(5, b"") + b"\x40\x07",  # array, then string_value_strindex
        _field(7, b"\x00") + b"\x78\x01",  # bytes, then an unknown field 15
    ]
    for value in odd_values:
        key_values = [
            _field(1, b"k") + _field(2, value),
            _field(1, b"k"),
            b"\x10\x05" + _field(1, b"n"),
        ]
        for kv in key_values:
            records.append(LogRecord.FromString(_field(6, kv) + _field(6, _field(1, b"x"))))
    read_in_c = 0
    for lr in records:
        expected = normalise._attribute_types(lr.attributes)
        got = normalise._types_in_c(
            lr.SerializeToString(), normalise._WIRE_TYPES, normalise._NAME_OF_FIELD
        )
        assert got is None or got == expected
        read_in_c += got is not None
        assert normalise._record_types(lr) == expected
    assert read_in_c > 0.9 * len(records)
