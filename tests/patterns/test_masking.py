"""Masking rules: one test per default rule, config validation, rule placement."""

from __future__ import annotations

import pytest

from via_otlp.config import parse_config
from via_otlp.errors import ConfigError
from via_otlp.patterns.config import DEFAULT_MASKING, MaskRule, PatternsConfig
from via_otlp.patterns.masking import Masker

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
