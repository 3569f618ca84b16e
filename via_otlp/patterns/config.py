"""Configuration of the patterns stage (the `patterns` section of via.json5).

One global configuration serves every source: a user cannot tune per source, so the defaults
below were chosen on eight different real systems (see `benchmarks/patterns.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.errors import ConfigError


@dataclass(frozen=True)
class MaskRule:
    """One masking rule: text matching `regex` is replaced by `mask` before mining.

    Rules are tried in order at each position (the first rule that matches there wins), so put
    the specific shapes (UUID, IP with port) before the general ones (numbers). Use ``\\d`` rather
    than literal digits: the fast path assumes that lines differing only in their digits mask
    alike (a rule with a literal digit switches that shortcut off).
    """

    name: str = field(metadata=spec(nonempty=True))
    regex: str = field(metadata=spec(nonempty=True))
    mask: str = "<*>"

    def check(self) -> None:
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ConfigError("regex", f"rule {self.name!r} does not compile: {exc}") from None
        if compiled.fullmatch("") is not None:
            raise ConfigError("regex", f"rule {self.name!r} matches the empty string")
        if compiled.groupindex:
            raise ConfigError(
                "regex",
                f"rule {self.name!r} uses named groups",
                hint="use (?:...) groups; the rule's name already names it",
            )


def _r(name: str, regex: str, mask: str = "<*>") -> MaskRule:
    return MaskRule(name, regex, mask)


_HEX = "[0-9a-fA-F]"
# A common top-level domain ends a host name; a bare dotted word (a Java class, a config key)
# is not a host, so the list is what keeps `org.apache.Foo` a constant.
_TLD = "(?:com|net|org|edu|gov|mil|int|io|co|uk|de|fr|jp|cn|hk|ru|br|in|au|nl|eu|us|ca|local|internal|lan|corp|svc|cluster)"

_MONTH = (
    "(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    "|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WEEKDAY = "(?:Mon|Tue(?:s)?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?"
_CLOCK = r"\d{1,2}:\d\d(?::\d\d(?:[.,]\d+)?)?"
# The lookahead lets the regex engine reject most positions with one test (the rule runs over
# whole lines, and only on lines holding a month or weekday name: see `required_strings`): a
# match opens with a month or weekday name, or the digits of a day, a word followed by a space
# or a comma; so ``/Mar/`` of a common log format date (its own rule) fails at once.
_DATETIME_START = r"(?=[ADFJMNOSTW\d]\w*+[ ,])"
_DATETIME = (
    _DATETIME_START + "(?:"
    # ctime, java.util.Date, date(1): weekday month day [year] time [[zone] year]
    rf"{_WEEKDAY},? +{_MONTH} +\d{{1,2}},?(?: +\d{{4}})? +{_CLOCK}(?: +(?:[A-Z]{{2,5}} +)?\d{{4}})?\b"
    # RFC 1123 / 850: weekday, day month year time [zone]
    rf"|{_WEEKDAY}, +\d{{1,2}}[ -]{_MONTH}[ -]\d{{2,4}} +{_CLOCK}(?: +(?:GMT|UTC|[+-]\d{{4}}))?(?![\w:])"
    # syslog and friends: month day [year] time
    rf"|{_MONTH} +\d{{1,2}}(?:,? +\d{{4}})? +{_CLOCK}(?![\w:])"
    # a date alone: [weekday,] month day[th], year / day month year
    rf"|(?:{_WEEKDAY},? +)?{_MONTH} +\d{{1,2}}(?:st|nd|rd|th)?, +\d{{4}}\b"
    rf"|\d{{1,2}} +{_MONTH} +\d{{4}}\b"
    ")"
)
# The common log format's date is one word (``04/Mar/2024:10:21:07``; its offset is another).
_CLF_DATE = rf"\b\d{{1,2}}+/{_MONTH}/\d{{4}}(?::\d\d:\d\d:\d\d)?(?![\w:])"

# A repeat is possessive (``\d++``, ``{1,4}+``) where what follows it can never begin with a
# character it repeats: giving one back could not make the rule match, so the regex engine is
# told not to try (a run of digits that is not a duration was retried once per digit, for
# every unit). The matches are the same; failing is what gets cheaper.
DEFAULT_MASKING: tuple[MaskRule, ...] = (
    # Dates and times written for people: ctime and java.util.Date (``Mon Mar  4 10:21:07 UTC
    # 2024``), RFC 1123 (``Mon, 04 Mar 2024 10:21:07 GMT``), syslog (``Mar  4 10:21:07``),
    # ``March 4, 2024``, the common log format (``04/Mar/2024:10:21:07 +0000``, two words): any
    # month or weekday name, any spacing. Their words would otherwise make one template a day.
    _r("datetime", _DATETIME),
    _r("clf_date", _CLF_DATE),
    # glog / klog header at the start of a line: severity letter, month and day, time
    # (``I0304 10:21:07.123456``)
    _r("klog_header", r"^[IWEF]\d{4} +\d\d:\d\d:\d\d(?:\.\d+)?\b"),
    _r("timestamp", r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d++)?(?:Z|[+-]\d\d:?\d\d)?(?![\w.])"),
    _r("uuid", rf"\b{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\b"),
    _r("mac", rf"(?<![\w:-]){_HEX}{{2}}(?:[:-]{_HEX}{{2}}){{5}}(?![\w:-])"),
    _r(
        "ipv6",
        rf"(?<![\w:])\[?(?:{_HEX}{{1,4}}+:){{7}}{_HEX}{{1,4}}+(?:\]:\d++)?(?![\w:])"
        rf"|(?<![\w:])\[?(?:{_HEX}{{1,4}}+:)+:(?:{_HEX}{{1,4}}+(?::{_HEX}{{1,4}}+)*)?(?:\]:\d++)?(?![\w:])",
    ),
    _r("ipv4", r"/?(?<![\w.])\d{1,3}+(?:\.\d{1,3}+){3}(?::\d{1,5}+)?(?![\w.])"),
    # A scheme of at most 32 characters: each start scans a bounded distance (an unbounded
    # `[\w+.-]*` rescanned a long dotted token from every word start: quadratic).
    _r("url", r"\b[a-zA-Z][\w+.-]{0,31}+://\S+"),
    _r("host", rf"(?<![\w.@/-])(?:[\w-]++\.)+{_TLD}(?::\d{{1,5}}+)?(?![\w.-])"),
    # file paths of two segments or more, Unix or Windows (``C:\Windows\Temp\x.log``)
    _r("path", r"(?<![\w.:/\\])(?:[A-Za-z]:)?(?:[/\\][\w.@%+~$-]+){2,}[/\\]?(?![\w/\\])"),
    _r("id", r"\b[A-Za-z][A-Za-z0-9]*+(?:_[A-Za-z][A-Za-z0-9]*+)*_-?\d[\w-]*"),
    _r("hex", rf"\b\d[xX]{_HEX}++\b|\b(?=[0-9]*+[a-fA-F])(?=[a-fA-F]*+\d){_HEX}{{8,}}+\b"),
    _r(
        "duration",
        r"(?<![\w.])\d++(?:\.\d++)?(?:ns|us|µs|ms|s|m|h|d)(?:\d++(?:\.\d++)?(?:ms|s|m))*\b",
    ),
    # Starts with `\d` so that the regex engine can skip ahead to digits (this rule can match a
    # space, so it runs over whole lines).
    _r("size", r"\d(?<![\w.]\d)(?:\d*+\.)?\d*+ ?(?:[KMGTP]i?B|B|bytes?)\b"),
    # Quoted strings are values, masked whole, except two: a quoted HTTP request line keeps its
    # method and protocol (only the target is variable), and
    _r("http_target", r'(?<=[A-Z] )[^\s"]+(?= HTTP/\d)'),
    # the message of a structured line (``msg="..."``, or right after a header's ``] ``) is the
    # event, not a value: it is left to the miner. A string opens at a quote after a space or
    # `=:([{,` only, so the quote that closes a string left alone never opens another one.
    _r(
        "quoted",
        r"(?<![^\s=:(\[{,])(?<!msg=)(?<!message=)(?<!\] )"
        r'"(?![A-Z]+ [^\s"]+ HTTP/\d)(?:[^"\\]|\\.)*"',
        '"<*>"',
    ),
    # A kernel's uptime stamp and other bracketed, space-padded numbers: ``[   12.345678]``.
    _r("padded_number", r"\[ \ *\d+(?:\.\d+)?\]", "[<*>]"),
    # Boolean values, and null after a key: values, not words of the message.
    _r("boolean", r"(?<![\w.-])(?:true|false|True|False|TRUE|FALSE)(?![\w-])"),
    _r("null", r"(?<=[=:])(?:null|NULL|nil|None)(?![\w-])"),
    # (whole runs only: never the first digits of a run glued to a word, as in ``X11``)
    _r("number", r"(?<![A-Za-z_\d])(?<!\d\.)(?<!HTTP/)[-+]?\d++(?:[.,_]\d++)*(?![A-Za-z_\d])"),
)


@dataclass(frozen=True)
class PatternsConfig:
    """How log bodies become templates (masking, then a streaming prefix-tree miner)."""

    masking: tuple[MaskRule, ...] = DEFAULT_MASKING
    similarity: float = field(default=0.5, metadata=spec(gt=0.0, le=1.0))
    max_tokens: int = field(default=64, metadata=spec(ge=4))
    max_token_chars: int = field(default=512, metadata=spec(ge=16))
    max_templates_per_source: int = field(default=2000, metadata=spec(ge=10))
    max_sources: int = field(default=10_000, metadata=spec(ge=1))
    fast_path_size: int = field(default=20_000, metadata=spec(ge=0))
    fast_path_bytes: int = field(default=8 * 1024**2, metadata=spec(unit="size", ge=0))
    flood_window: int = field(default=1000, metadata=spec(ge=10))
    flood_ratio: float = field(default=0.5, metadata=spec(gt=0.0, le=1.0))
    use_template_hint: bool = True
    min_word_values: int = field(default=3, metadata=spec(ge=2))
    key_values: bool = True
