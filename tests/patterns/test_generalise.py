"""The classes of variables that used to split (or merge) templates, each for any value.

Dates written for people, HTTP request lines, two-valued values (booleans, ``key:value``),
and merges that keep the oldest id. Every test builds its inputs for the whole class (any
month, weekday, spacing, method...), never from one data set's tokens.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from via_otlp.patterns.config import DEFAULT_MASKING, MaskRule, PatternsConfig
from via_otlp.patterns.masking import Masker
from via_otlp.patterns.miner import SourceMiner, Template

MASKER = Masker.from_rules(DEFAULT_MASKING)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
LONG_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31))
spaces = st.sampled_from([" ", "  "])


def _shapes(t: datetime, sp: str) -> list[str]:
    """The same moment in the human-readable shapes of the issue (and a few more)."""
    mon, day = MONTHS[t.month - 1], DAYS[t.weekday()]
    return [
        f"{day} {mon}{sp}{t.day:2d} {t:%H:%M:%S} {t.year}",  # ctime
        f"{day} {mon} {t.day:02d} {t:%H:%M:%S} UTC {t.year}",  # java.util.Date
        f"{mon}{sp}{t.day:2d} {t:%H:%M:%S}",  # syslog
        f"{day}, {t.day:02d} {mon} {t.year} {t:%H:%M:%S} GMT",  # RFC 1123
        f"{LONG_MONTHS[t.month - 1]} {t.day}, {t.year}",  # a date alone
    ]


@settings(max_examples=200, deadline=None)
@given(t=moments, sp=spaces)
def test_human_readable_dates_are_one_variable(t: datetime, sp: str) -> None:
    for text in _shapes(t, sp):
        assert MASKER.mask(f"job done at {text} ok") == "job done at <*> ok", text
    # the common log format's date and offset, numeric dates: two words, each a variable; a
    # klog header opens its line
    assert MASKER.mask(
        f"at [{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000] ok"
    ) == ("at [<*> <*>] ok")
    assert (
        MASKER.mask(f"at {t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} ok") == "at <*> <*> ok"
    )
    assert MASKER.mask(f"at {t:%Y/%m/%d %H:%M:%S} ok") == "at <*> <*> ok"
    assert MASKER.mask(f"at {t:%Y-%m-%dT%H:%M:%S}.123Z ok") == "at <*> ok"
    assert MASKER.mask(f"I{t:%m%d %H:%M:%S}.{t.microsecond:06d} 7 x.go:1] ok") == (
        "<*> <*> x.go:<*>] ok"
    )


def test_dates_of_every_day_share_one_template() -> None:
    miner = SourceMiner(PatternsConfig())
    start = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
    ids = set()
    for day in range(400):  # every weekday of every month, one- and two-digit days
        t = start + timedelta(days=day, seconds=day * 977)
        for text in _shapes(t, " "):
            ids.add(miner.add(f"Last login: {text} from 10.0.0.{day % 250}").id)
    assert len(ids) == 1 and len(miner.templates) == 1


def test_a_time_after_a_date_is_not_taken_for_a_zone() -> None:
    assert MASKER.mask("Mar  4 10:21:07 INFO started") == "<*> INFO started"


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(
        ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"]
    ),
    version=st.sampled_from(["1.0", "1.1", "2.0"]),
    path=st.from_regex(
        r"/[a-z0-9]{1,8}(/[a-zA-Z0-9._-]{1,10}){0,3}(\?[a-z]=[0-9]{1,4})?", fullmatch=True
    ),
)
def test_http_request_line_keeps_method_and_protocol(method: str, version: str, path: str) -> None:
    line = f'1.2.3.4 - - [04/Mar/2024:10:21:07 +0000] "{method} {path} HTTP/{version}" 200 5 "-" "curl/8.5.0"'
    assert (
        MASKER.mask(line) == f'<*> - - [<*> <*>] "{method} <*> HTTP/{version}" <*> <*> "<*>" "<*>"'
    )
    bare = MASKER.mask(f"request {method} {path} HTTP/{version} failed")
    assert bare == f"request {method} <*> HTTP/{version} failed"


def test_requests_of_each_method_and_protocol_are_apart() -> None:
    miner = SourceMiner(PatternsConfig())
    ids = {}
    rng = random.Random(3)
    for _ in range(300):
        method = rng.choice(["GET", "POST", "DELETE"])
        version = rng.choice(["1.1", "2.0"])
        path = f"/api/{rng.choice(['orders', 'users'])}/{rng.randrange(10**5)}"
        template = miner.add(f'"{method} {path} HTTP/{version}" {rng.choice([200, 404])}')
        ids.setdefault((method, version), set()).add(template.resolve().id)
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == 6


def test_structured_message_is_not_masked_but_values_are() -> None:
    assert (
        MASKER.mask('level=info msg="Pod status updated" pod="web-1" note="a b" x')
        == 'level=info msg="Pod status updated" pod="<*>" note="<*>" x'
    )
    assert MASKER.mask('I0304 10:21:07.1 1 c.go:12] "Reconciling" name="x"') == (
        '<*> <*> c.go:<*>] "Reconciling" name="<*>"'
    )


@pytest.mark.parametrize("value", ["true", "false", "True", "False", "TRUE", "FALSE"])
def test_booleans_are_values(value: str) -> None:
    assert MASKER.mask(f"retry {value}, cached:{value} ok={value} ({value})") == (
        "retry <*>, cached:<*> ok=<*> (<*>)"
    )
    assert MASKER.mask("x=null y:None trueish untrue") == "x=<*> y:<*> trueish untrue"


def test_padded_bracketed_numbers_are_one_variable() -> None:
    for stamp in ("[    0.000000]", "[   12.345678]", "[123456.789012]"):
        assert MASKER.mask(f"kernel: {stamp} eth0: link up") == "kernel: [<*>] eth0: link up"


def test_a_rule_looking_at_whitespace_runs_over_the_line() -> None:
    masker = Masker.from_rules((MaskRule("after_get", r"(?<=GET )\S+"),))
    assert masker.mask("GET /a b") == "GET <*> b"


def test_two_values_after_a_key_are_enough() -> None:
    miner = SourceMiner(PatternsConfig())
    a = miner.add("cache lookup mode: fast")
    b = miner.add("cache lookup mode: slow")
    assert a is b and a.text == "cache lookup mode: <*>"
    miner = SourceMiner(PatternsConfig(key_values=False))
    assert miner.add("cache lookup mode: fast") is not miner.add("cache lookup mode: slow")


def test_constant_words_after_a_key_stay_apart() -> None:
    miner = SourceMiner(PatternsConfig())
    a = miner.add("state: RUNNING for job 7")
    b = miner.add("state: STOPPED for job 8")
    assert a is not b


def test_a_merge_keeps_the_oldest_id_and_is_reported() -> None:
    miner = SourceMiner(PatternsConfig())
    merges: list[tuple[str, Template]] = []
    miner.on_merge = lambda old, survivor: merges.append((old, survivor))
    lines = [
        "job db-2 finished for alice",  # the oldest template
        "job db-2 finished for dave",
        "job web-1 finished for dave",
        "job edge-4 finished for carol",  # two words differ: a younger template
        "job app-3 finished for bob",  # widens the younger one, which then covers the oldest
    ]
    templates = [miner.add(line) for line in lines]
    survivor = templates[-1].resolve()
    assert survivor.id == templates[0].id  # the oldest id stays
    assert survivor.text == "job <*> finished for <*>" and len(miner.templates) == 1
    assert {t.resolve().id for t in templates} == {survivor.id}
    assert [s.id for _, s in merges] == [survivor.id] * len(merges)
    assert {old for old, _ in merges} == {t.id for t in templates} - {survivor.id}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("generating core.2275", "generating core.<*>"),  # a number after a word and a dot
        ("Session: 30546174_3208770939 initialized", "Session: <*> initialized"),
        ("X11 v1.2.3 ssh22 HTTP/1.1", "X11 v1.2.3 ssh22 HTTP/1.1"),  # digits of words: kept whole
        (r"Loaded C:\Windows\winsxs\amd64_x_6.1\cbscore.dll ok", "Loaded <*> ok"),
        ("DFSClient_NONMAPREDUCE_1537864556_1 renewed", "<*> renewed"),
    ],
)
def test_numbers_inside_words_and_ids_and_paths(text: str, masked: str) -> None:
    assert MASKER.mask(text) == masked
