"""Masking rules: one test per default rule, config validation, rule placement."""

from __future__ import annotations

import csv
import random
import re
from functools import cache
from pathlib import Path

import pytest

from via_otlp.config import DEFAULT_CONFIG_PATH, load_config, parse_config
from via_otlp.errors import ConfigError
from via_otlp.patterns.config import (
    _DATETIME,
    _DATETIME_START,
    DEFAULT_MASKING,
    MaskRule,
    PatternsConfig,
)
from via_otlp.patterns.masking import (
    Masker,
    _compile,
    _separators,
    _tail,
    required_strings,
    requires_digit,
    starts_inside_words,
)

MASKER = Masker.from_rules(DEFAULT_MASKING)

# (rule name, input, masked): each default rule on the shape it exists for.
CASES = [
    ("timestamp", "at 2024-05-01T12:00:01.123Z done", "at <*> done"),
    ("uuid", "req 123e4567-e89b-12d3-a456-426614174000 ok", "req <*> ok"),
    ("mac", "mac 00:1a:2b:3c:4d:5e up", "mac <*> up"),
    ("ipv6", "from fe80::1ff:fe23:4567:890a ok", "from <*> ok"),
    ("ipv6", "peer [2001:db8::1]:8080 ok", "peer <*> ok"),
    ("ipv4", "peer 10.0.0.1:8080 and 192.168.1.1", "peer <*> and <*>"),
    ("ipv4", "src: /10.250.19.102:54106", "src: <*>"),
    ("url", "see https://example.com/a?b=1 now", "see <*> now"),
    ("host", "host db1.example.com:5432 down", "host <*> down"),
    ("path", "read /var/log/app/x.log failed", "read <*> failed"),
    ("id", "id blk_-5623 and attempt_1_2_m_3", "id <*> and <*>"),
    ("hex", "tx 0x1f3a and deadbeef1234", "tx <*> and <*>"),
    ("duration", "took 12ms and 3.5s", "took <*> and <*>"),
    ("size", "wrote 16.0 MB and 512 bytes", "wrote <*> and <*>"),
    ("quoted", 'said "hello world" ok', 'said "<*>" ok'),
    ("number", "count 42 (TID:1234) ratio=-0.5", "count <*> (TID:<*>) ratio=<*>"),
]


@pytest.mark.parametrize(
    ("rule", "text", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_default_rule(rule: str, text: str, expected: str) -> None:
    assert rule in {r.name for r in DEFAULT_MASKING}
    assert MASKER.mask(text) == expected


def test_constant_words_with_digits_are_kept() -> None:
    assert MASKER.mask("ssh2 jk2_init() flush2DB IPv4") == "ssh2 jk2_init() flush2DB IPv4"
    assert MASKER.mask("org.apache.hadoop.Foo started") == "org.apache.hadoop.Foo started"


def test_adjacent_masks_collapse_into_one() -> None:
    assert MASKER.mask("BP-1347369012-10.190.173.170-1444972147527:blk_1073742826_2022") == "BP-<*>"


def test_rule_order_first_match_wins() -> None:
    rules = (MaskRule("word", r"\bsecret\w*", "<SECRET>"), MaskRule("number", r"\d+"))
    assert Masker.from_rules(rules).mask("secret42 and 7") == "<SECRET> and <*>"
    assert Masker.from_rules(rules[::-1]).mask("secret42 and 7") == "<SECRET> and <*>"
    rules2 = (MaskRule("number", r"\d+"), MaskRule("word", r"\b\w+\b", "<W>"))
    assert Masker.from_rules(rules2).mask("a1") == "<W>"
    assert Masker.from_rules(rules2).mask("1 a") == "<*> <W>"


def test_rules_spanning_whitespace_run_over_the_line() -> None:
    masker = Masker.from_rules((MaskRule("pair", r"key \w+", "<K>"),))
    assert masker.mask("a key value b") == "a <K> b"


def test_digit_agnostic_detection() -> None:
    assert MASKER.digit_agnostic
    assert not Masker.from_rules((MaskRule("port", r"port 22\b"),)).digit_agnostic
    assert Masker.from_rules((MaskRule("ip", r"\d{1,3}(?:\.\d{1,3}){3}"),)).digit_agnostic


def test_token_cache_gives_same_result() -> None:
    masker = Masker.from_rules(DEFAULT_MASKING)
    first = [masker.mask(f"job {i} took {i}ms on node-{i}") for i in range(50)]
    assert set(first) == {"job <*> took <*> on node-<*>"}


def test_config_loads_rules_in_order() -> None:
    cfg = parse_config('{patterns: {masking: [{name: "num", regex: "\\\\d+", mask: "#"}]}}')
    assert cfg.patterns.masking == (MaskRule("num", r"\d+", "#"),)
    assert Masker.from_rules(cfg.patterns.masking).mask("a 12 b") == "a # b"


def test_bad_regex_is_a_config_error_naming_the_rule() -> None:
    text = '{patterns: {masking: [{name: "ok", regex: "a"}, {name: "ipv4", regex: "(\\\\d+"}]}}'
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.path == "patterns.masking[1].regex"
    assert "rule 'ipv4' does not compile" in str(exc.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('{name: "e", regex: "x*"}', "matches the empty string"),
        ('{name: "g", regex: "(?P<n>x)"}', "named groups"),
        ('{name: "", regex: "x"}', "must not be empty"),
        ('{name: "m", regex: "x", colour: 1}', "unknown key"),
    ],
)
def test_other_rule_errors(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"{{patterns: {{masking: [{rule}]}}}}")


def test_numeric_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"patterns\.similarity"):
        parse_config("{patterns: {similarity: 0}}")
    assert parse_config("{patterns: {max_tokens: 32}}").patterns.max_tokens == 32
    assert parse_config("{}").patterns == PatternsConfig()


def test_line_rule_with_leading_literal_respects_case_flags() -> None:
    masker = Masker.from_rules((MaskRule("k", r"(?i:key) \w+", "<K>"),))
    assert masker.mask("a KEY v b") == "a <K> b"


def test_zero_digits_are_masked_like_any_digit() -> None:
    # a token of zeros has the same digit shape as itself: it must still meet the digit rules
    assert (
        MASKER.mask("task 0 in stage 0.0 (TID 0) uid=0")
        == "task <*> in stage <*> (TID <*>) uid=<*>"
    )
    assert (
        MASKER.mask("task 7 in stage 1.0 (TID 3) uid=9")
        == "task <*> in stage <*> (TID <*>) uid=<*>"
    )


# -- the analyses that let rules be skipped must never skip a rule that would match ------------

DATA = Path(__file__).resolve().parent.parent / "data" / "loghub-2k"


@cache
def _loghub_lines() -> list[str]:
    lines = []
    for path in sorted(DATA.glob("*/*_2k.log_structured_corrected.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            lines += [row["Content"] for row in csv.DictReader(f)]
    return lines


def _samples() -> list[str]:
    """Loghub lines, and random strings made of the characters the rules care about."""
    rng = random.Random(5)
    alphabet = '0123456789abcdefxXABCDEFKMGTPiBytesmsuµhn:/.-_[]"=+,@%~ T'
    noise = ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(3000)]
    return _loghub_lines() + noise


@cache
def _inside_words() -> list[tuple[str, list[int]]]:
    """Each sample with its positions inside a word (after a word character, before its end),
    found once for every rule that says it does not start there."""
    return [(text, [m.end() for m in re.finditer(r"\w", text[:-1])]) for text in _samples()]


RULES = {r.name: r for r in DEFAULT_MASKING}


def test_required_strings_of_the_default_rules() -> None:
    assert required_strings(RULES["size"].regex) == ("B", "byte")
    assert required_strings(RULES["quoted"].regex) == ('"',)
    assert required_strings(RULES["url"].regex) == ("://",)
    assert required_strings(RULES["number"].regex) == ()
    assert required_strings(r"(?i)abc") == ()  # case-insensitive: nothing to require
    assert required_strings(r"(?i:key) \w+") == (" ",)


@pytest.mark.parametrize("rule", DEFAULT_MASKING, ids=lambda r: r.name)
def test_required_strings_hold_in_every_match(rule: MaskRule) -> None:
    needed = required_strings(rule.regex)
    regex = re.compile(rule.regex)
    for text in _samples():
        for m in regex.finditer(text):
            assert not needed or any(s in text for s in needed), (rule.name, text, m.group())


@pytest.mark.parametrize("rule", DEFAULT_MASKING, ids=lambda r: r.name)
def test_rules_said_to_need_a_digit_never_match_without_one(rule: MaskRule) -> None:
    if not requires_digit(rule.regex):
        return
    regex = re.compile(rule.regex)
    for text in _samples():
        if not re.search(r"\d", text):
            assert regex.search(text) is None, (rule.name, text)


@pytest.mark.parametrize("rule", DEFAULT_MASKING, ids=lambda r: r.name)
def test_rules_said_not_to_start_inside_words_do_not(rule: MaskRule) -> None:
    if starts_inside_words(rule.regex):
        return
    regex = re.compile(rule.regex)
    for text, inside in _inside_words():
        for i in inside:
            assert regex.match(text, i) is None, (rule.name, text, i)


@pytest.mark.parametrize(
    "rule", [r for r in DEFAULT_MASKING if re.search(r"[+*}]\+", r.regex)], ids=lambda r: r.name
)
def test_possessive_repeats_match_what_greedy_ones_match(rule: MaskRule) -> None:
    # `\d++` is only there to fail faster: the greedy rule must match the same spans
    greedy = re.compile(re.sub(r"([+*}])\+", r"\1", rule.regex))
    possessive = re.compile(rule.regex)
    for text in _samples():
        assert possessive.sub("<*>", text) == greedy.sub("<*>", text), (rule.name, text)


def test_analyses_of_other_rule_shapes() -> None:
    assert not starts_inside_words(r"\b(?:ab|\d+)x")
    assert starts_inside_words(r"\b(?:ab|-)x")  # `-` is no word character
    assert starts_inside_words(r"(?<![a-z])\d")  # a digit may come before
    assert starts_inside_words(r"(?i)\bk")
    assert requires_digit(r"x(?:\d|[0-5])y") and not requires_digit(r"x(?:\d|a)")
    assert not requires_digit(r"a\d*") and requires_digit(r"a\d{2,}")


def _plain_alternation(rules: tuple[MaskRule, ...]) -> re.Pattern[str]:
    """The reference: every rule a named group, no guard, no rule left out."""
    return re.compile("|".join(f"(?P<_m{i}>{r.regex})" for i, r in enumerate(rules)))


@pytest.mark.parametrize(
    "rules",
    [
        DEFAULT_MASKING,
        (
            MaskRule("word", r"\bsecret\w*", "<SECRET>"),
            MaskRule("hexid", r"\b0x[0-9a-f]+", "<HEX>"),
            MaskRule("number", r"\d+"),
        ),
    ],
    ids=["default", "several-masks"],
)
def test_token_masking_equals_the_plain_alternation(rules: tuple[MaskRule, ...]) -> None:
    masker = Masker.from_rules(rules)
    token_rules = tuple(r for r in rules if r.name not in ("size", "quoted"))
    plain = _plain_alternation(token_rules)
    masks = {plain.groupindex[f"_m{i}"]: r.mask for i, r in enumerate(token_rules)}
    tokens = sorted({t for line in _samples() for t in line.split()})
    rng = random.Random(7)  # and tokens cut at separators (`#`, `(`...) into pieces masked apart
    pieces = ["12", "0x1f", "a_1", "1.2.3.4", "ab", "x=5", "-3", "ms", "http://h", "", ":"]
    tokens += [
        "".join(rng.choice(pieces) + rng.choice("#();|'*<>") for _ in range(3)) for _ in range(500)
    ]
    for token in tokens:
        expected = plain.sub(lambda m: masks[m.lastindex or 0], token)
        expected = re.sub(r"<\*>(?:[-.:_/]*<\*>)+", "<*>", expected)
        assert masker._mask_token(token) == expected, token


def test_tokens_are_cut_only_at_characters_no_rule_sees() -> None:
    seps = _compile(DEFAULT_MASKING).separators
    assert seps is not None and seps.search("#") and not seps.search(".")
    assert seps.guards == ("://",)  # the URL rule's \\S+ sees `#`, in a URL only
    assert _separators((MaskRule("any", r"\d[^y]+"),)) is None  # a negated class sees them all
    guarded = _separators((MaskRule("any", r"x[^y]+"),))  # ... in a token holding `x` only
    assert guarded is not None and guarded.guards == ("x",)
    assert MASKER.mask("steps=1514038440000##7007##5") == "steps=<*>##<*>##<*>"
    assert MASKER.mask("http://h/a#12") == "<*>"  # a URL is masked whole


def test_shipped_config_holds_the_default_rules() -> None:
    # config/via.json5 replaces the whole list: it must say what the built-in defaults say
    assert load_config(DEFAULT_CONFIG_PATH, environ={}).patterns == PatternsConfig()


def test_lines_whose_tokens_hold_no_piece_of_a_line_rule_skip_the_line_rules() -> None:
    masker = Masker.from_rules(DEFAULT_MASKING)
    line = "job 17 took 12ms on node-3 for user=alice"
    assert masker.mask(line) == "job <*> took <*> on node-<*> for user=alice"

    def refuse(text: str) -> str:
        raise AssertionError(f"line rules ran over {text!r}")

    masker._apply_line_rules = refuse  # type: ignore[method-assign]
    assert masker.mask("job 4242 took 1ms on node-77 for user=alice") == masker.mask(line)
    # the size rule's `B` ends a unit (its match's end, after the last space it may hold)
    assert masker.mask("BLOCK* job 1 Bye") == "BLOCK* job <*> Bye"
    # a token holding a piece (a unit of the size rule, `"` of the quoted one) runs them
    for held in ("job 1 took 2 KB", 'job 1 "x y"', "got 16MB, ok", "Mar  4 10:21:07 job"):
        with pytest.raises(AssertionError, match="line rules ran"):
            masker.tokens(held)


def test_masking_equals_running_every_line_through_the_line_rules() -> None:
    # The reference takes the line-rule path for every line; the masker skips it when no token
    # holds a piece, and keeps tokens that hold one in caches of their own: warm or cold, the
    # same tokens (Loghub lines, noise, and lines made for the line rules).
    reference = Masker.from_rules(DEFAULT_MASKING)
    reference._gate = None
    extra = [
        "at Mon Mar  4 10:21:07 UTC 2024 x",
        "got 16 MB and 3 KB)",
        "[   12.5] kernel",
        "x [ 1]",
        'GET /a/1 HTTP/1.1 "GET /b HTTP/1.0"',
        "I0304 10:21:07.123 x.go:1] ok",
        "B 1 B",
        "1 bytes",
    ]
    lines = _samples() + extra
    masker = Masker.from_rules(DEFAULT_MASKING)
    changed = 0
    for _ in range(2):
        for i, line in enumerate(lines):  # every third line with the line rules run first
            assert masker.tokens(line, rules_first=i % 3 == 0) == reference.tokens(line), line
            assert masker.changed == reference.changed, line
            changed += reference.changed
    assert changed


def test_held_caches_share_the_bound_of_the_plain_ones() -> None:
    # Tokens holding a piece of a line rule (`"`, a unit `B`) are cached apart from the others; each
    # held cache and its plain counterpart hold `cache_size` entries together, never more.
    size = 40
    masker = Masker(DEFAULT_MASKING, cache_size=size)
    unbounded = Masker(DEFAULT_MASKING)
    for i in range(300):
        word = "".join(chr(97 + int(d)) for d in str(i))
        line = f'{word} x"{word} {word}-{i} {word}-{i}-B x{i % 7}{"y" * (i % 50)}'
        assert masker.tokens(line) == unbounded.tokens(line)
        assert len(masker._cache) + len(masker._held) <= size
        assert len(masker._shapes) + len(masker._held_shapes) <= size
    assert masker._held and masker._held_shapes and masker._cache and masker._shapes


def test_datetime_lookahead_changes_no_match() -> None:
    # `_DATETIME_START` only lets the regex engine fail faster: what every match opens with
    # (a month or weekday name, or a day's digits, as a word before a space or a comma).
    assert _DATETIME.startswith(_DATETIME_START)
    fast = re.compile(_DATETIME)
    plain = re.compile(_DATETIME.removeprefix(_DATETIME_START))
    made = [
        f"{w}{sep}{d} {t}"
        for w in ("Mon", "Tues", "Wednesday", "Thu", "Mar", "Sept", "March", "xMar", "Mayday")
        for sep in (" ", "  ", ", ", ",", "/", "-", "_")
        for d in ("4", "04 Mar 2024", "Mar  4", "4, 2024", "12 December 2024", "4th, 1999")
        for t in ("10:21:07", "10:21:07.5 UTC 2024", "1:2", "2024 x", "10:21:07 GMT")
    ]
    masked = 0
    for text in _samples() + made:
        out = fast.sub("<*>", text)
        assert out == plain.sub("<*>", text), text
        masked += out != text
    assert masked > len(made) // 4


def test_a_line_rule_is_gated_by_its_end_only_when_that_end_holds_what_every_match_holds() -> None:
    size = _tail(RULES["size"].regex, required_strings(RULES["size"].regex))
    assert size is not None and size("BLOCK*") is None and size("16MB,") is not None
    assert size("bytes") is not None and size("B") is not None and size("DB") is not None
    assert _tail(r"\d+ (?:KB|MB)x", ("KB", "MB")) is not None
    assert _tail(r"(\d) ?\1B", ("B",)) is None  # a reference to a group before it
    assert _tail(r"B \d+", ("B",)) is None  # the end holds no needed string
    assert _tail(r'x "', ('"',)) is None  # a string: `_pieces` already tell it
