"""Masking: replace the obvious variables (ids, addresses, numbers...) before mining.

The ordered rules are compiled once. A rule that can match whitespace (a quoted string, a
size such as ``16.0 MB``) runs over the whole line, first; every other rule runs inside one
whitespace-separated token, and the masked form of a token is cached, so that the words that
make up most of every line cost one dictionary look-up. Within each group, the rules are ONE
alternation: at each position the first rule (in configured order) that matches wins.
What a rule needs is derived from its parsed regex, for any configured rule: strings that
every match contains (a line rule is skipped on a line without them), a digit (the rules that
need one are left out for a token without digits), a position outside words (such rules share
one test there instead of one try each).
Adjacent masks joined only by ``-``, ``.``, ``:``, ``_`` or ``/`` collapse into one mask: a block
id such as ``BP-1347369012-10.190.173.170-1444972147527:blk_1073742826_2022`` is one variable.

>>> m = Masker.from_rules(DEFAULT_MASKING)
>>> m.mask("user 42 from 10.0.0.1:443 took 12ms")
'user <*> from <*> took <*>'
>>> m.mask('GET /api/v1/users/17 failed: "no such user"')
'GET <*> failed: "<*>"'
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from via_otlp.patterns.config import DEFAULT_MASKING, MaskRule

# The parser of the `re` module (`re._parser` since 3.11) tells what a rule can consume.
_sre_c: Any = importlib.import_module("re._constants")
_sre_p: Any = importlib.import_module("re._parser")
_sre_compiler: Any = importlib.import_module("re._compiler")

WILDCARD = "<*>"
_COLLAPSE = re.compile(r"<\*>(?:[-.:_/]*<\*>)+")
# bytes.translate is ~20x faster than str.translate: shapes are bytes.
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w")
_WHITESPACE = frozenset(map(ord, " \t\n\r\f\v"))
# Greedy, lazy and possessive (``\d++``) repeats: the same to every analysis below.
_REPEATS = (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, _sre_c.POSSESSIVE_REPEAT)
MAX_CACHED_TOKEN = 128  # longer tokens are not cached (caches are bounded in bytes, too)


def _can_match_whitespace(regex: str) -> bool:
    """Can `regex` consume, or look at, a whitespace character? Then it needs the whole line.

    A lookaround does not consume, but one that tests for whitespace (``(?<=GET )``) can only
    be satisfied across tokens, so such a rule runs over the line too.
    """
    return _walk(_sre_p.parse(regex))


def _walk(items: Any) -> bool:
    c = _sre_c
    for op, av in items:
        if op is c.LITERAL and av in _WHITESPACE:
            return True
        if op is c.NOT_LITERAL or op is c.ANY:
            return True
        if op is c.IN and _class_has_whitespace(av):
            return True
        if op is c.SUBPATTERN and _walk(av[-1]):
            return True
        if op in _REPEATS and _walk(av[2]):
            return True
        if op is c.BRANCH and any(_walk(branch) for branch in av[1]):
            return True
        if op is getattr(c, "ATOMIC_GROUP", None) and _walk(av):
            return True
        if op in (c.ASSERT, c.ASSERT_NOT) and _walk(av[1]):
            return True
    return False


def _class_has_whitespace(items: Any) -> bool:
    c = _sre_c
    if any(op is c.NEGATE for op, _ in items):
        return True
    for op, av in items:
        if op is c.LITERAL and av in _WHITESPACE:
            return True
        if op is c.RANGE and any(av[0] <= w <= av[1] for w in _WHITESPACE):
            return True
        if op is c.CATEGORY and av in (c.CATEGORY_SPACE, c.CATEGORY_NOT_DIGIT, c.CATEGORY_NOT_WORD):
            return True
    return False


def required_strings(regex: str) -> tuple[str, ...]:
    """Strings of which every match of `regex` contains one (empty when none can be told).

    Derived from the parsed regex, so it holds for any configured rule: a whole-line rule is
    skipped when the line contains none of them, which is what makes the ``size`` rule (it can
    start at any digit) cost one substring test on most lines instead of a regex scan.

    >>> required_strings(r"\\d+ ?(?:[KMG]i?B|bytes?)"), required_strings(r'"[^"]*"')
    (('B', 'byte'), ('"',))
    """
    items = _sre_p.parse(regex)
    if items.state.flags & re.IGNORECASE:
        return ()
    return tuple(sorted(_most_selective(_clauses(items))))


_MAX_CLASS = 8  # a character class of more characters says too little to be worth testing


def _most_selective(clauses: list[frozenset[str]]) -> frozenset[str]:
    """The clause that a line is least likely to satisfy: longest strings, then fewest."""
    return max(clauses, key=lambda c: (min(map(len, c)), -len(c)), default=frozenset())


def _clauses(items: Any) -> list[frozenset[str]]:
    """Conditions every match of the sequence `items` meets: it holds a string of each clause.

    Consecutive literals make one string; a group, or a repeat of at least one, adds the
    clauses of its body; a small class adds its characters; an alternation adds the union
    of each branch's most selective clause; a positive lookaround adds the clauses of what it
    looks at. Anything else (negative lookarounds, categories, optional parts,
    case-insensitive groups) adds nothing, which is always safe.
    """
    c = _sre_c
    out: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            out.append(frozenset(["".join(run)]))
            run = []
        if op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
            out += _clauses(av[-1])
        elif op in _REPEATS and av[0] >= 1:
            out += _clauses(av[2])
        elif op is c.IN:
            chars = _class_chars(av)
            if chars:
                out.append(chars)
        elif op is c.BRANCH:
            picks = [_most_selective(_clauses(branch)) for branch in av[1]]
            if all(picks):
                out.append(_drop_redundant(frozenset().union(*picks)))
        elif op is c.ASSERT:  # what a positive lookaround sees is in the text too
            out += _clauses(av[1])
    if run:
        out.append(frozenset(["".join(run)]))
    return out


def _class_chars(items: Any) -> frozenset[str]:
    """The characters of a small, plain class such as ``[KMGTP]`` (empty for any other)."""
    c = _sre_c
    chars: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            chars.add(chr(av))
        elif op is c.RANGE and av[1] - av[0] < _MAX_CLASS:
            chars.update(map(chr, range(av[0], av[1] + 1)))
        else:
            return frozenset()
    return frozenset(chars) if len(chars) <= _MAX_CLASS else frozenset()


def _drop_redundant(clause: frozenset[str]) -> frozenset[str]:
    """Drop the strings that contain another string of the clause (``ms`` when ``m`` is in)."""
    return frozenset(s for s in clause if not any(o != s and o in s for o in clause))


def _has_literal_digit(regex: str) -> bool:
    """Does `regex` name a particular digit (so lines differing in digits may mask apart)?"""

    def digit(op: Any, av: Any) -> bool:
        c = _sre_c
        if op in (c.LITERAL, c.NOT_LITERAL):
            return bool(48 <= av <= 57)
        return op is c.IN and any(
            (o is c.LITERAL and 48 <= a <= 57)
            or (o is c.RANGE and a != (48, 57) and a[0] <= 57 and a[1] >= 48)
            for o, a in av
        )

    return _some(_sre_p.parse(regex), digit)


def _some(items: Any, test: Callable[[Any, Any], bool]) -> bool:
    """Does `test(op, av)` hold for some item of `items`, at any depth (groups, repeats,
    alternatives, lookarounds)?"""
    c = _sre_c
    for op, av in items:
        if test(op, av):
            return True
        if op is c.SUBPATTERN and _some(av[-1], test):
            return True
        if op in _REPEATS and _some(av[2], test):
            return True
        if op is c.BRANCH and any(_some(b, test) for b in av[1]):
            return True
        if op in (c.ASSERT, c.ASSERT_NOT) and _some(av[1], test):
            return True
        if op is getattr(c, "ATOMIC_GROUP", None) and _some(av, test):
            return True
    return False


_MAX_NEEDLES = 3  # up to this many strings, `in` tests cost less than one regex search


class _LineRule(NamedTuple):
    """A whole-line rule and the quick test a line must pass before it runs (see `_gate`)."""

    regex: re.Pattern[str]
    mask: str
    needles: tuple[str, ...]  # a few strings of which every match contains one: `in` tests
    search: Callable[[str], object] | None  # else a quick search (None: no test)
    # Strings without whitespace of which every match contains one: one of them is inside one
    # token of a line the rule changes (empty: the rule can tell no token; see `_token_gate`).
    pieces: tuple[str, ...] = ()
    # A search finding, in a token, the end of a match that holds the needed strings (see
    # `_tail`): the test of the token gate instead of `pieces` (None: there is none).
    tail: Callable[[str], object] | None = None


def _line_rule(rule: MaskRule) -> _LineRule:
    """Compile a whole-line rule with the cheapest exact test that can skip it.

    A few strings of which every match contains one are tested with `in` (a fast substring
    search each, no match object); more with one regex search, whatever their number (a set
    of first characters lets the regex engine scan for them); a rule anchored at the start
    of the line with one match attempt there instead of a `sub` that scans the line.
    """
    regex = re.compile(rule.regex)
    needed = required_strings(rule.regex)
    if needed and not all(s.isspace() for s in needed):
        pieces = _pieces(needed)
        tail = _tail(rule.regex, needed)
        if len(needed) <= _MAX_NEEDLES:
            return _LineRule(regex, rule.mask, needed, None, pieces, tail)
        search = re.compile("|".join(map(re.escape, needed))).search
        return _LineRule(regex, rule.mask, (), search, pieces, tail)
    # nearly every line has a space: testing for one costs more than it saves
    return _LineRule(regex, rule.mask, (), regex.match if _anchored(rule.regex) else None)


def _pieces(needed: tuple[str, ...]) -> tuple[str, ...]:
    """Regexes, one per needed string, of which a token of every line holding it matches one.

    A needed string's longest run without whitespace is inside one whitespace-separated token
    of the line, at the token's start when whitespace comes before it in the string and at
    its end when whitespace follows. Empty when a needed string is whitespace only.

    >>> _pieces((" HTTP/", "[ ")), _pieces(("B", "byte")), _pieces(("x", " "))
    (('H(?<=^H)TTP/', '\\\\[$'), ('B', 'byte'), ())
    """
    out = []
    for s in needed:
        runs = s.split()
        if not runs:
            return ()
        k = max(range(len(runs)), key=lambda i: len(runs[i]))
        run = runs[k]
        first = re.escape(run[0])
        # ``^H`` as ``H(?<=^H)``: when every branch of the gate opens with a literal, the
        # regex engine skips to the characters that can start one instead of trying each.
        start = f"(?<=^{first})" if k > 0 or s[0].isspace() else ""
        end = "$" if k < len(runs) - 1 or s[-1].isspace() else ""
        out.append(first + start + re.escape(run[1:]) + end)
    return tuple(out)


def _tail(regex: str, needed: tuple[str, ...]) -> Callable[[str], object] | None:
    """A search for what a match of `regex` ends with, after its last item that can touch
    whitespace, when that end holds the `needed` strings (None: it does not, or it refers to a
    group, or is a string). It lies inside one token, whose other characters and ends it can
    tell no worse than the line can, so a token of every line the rule changes matches it:
    ``(?:[KMGTP]i?B|B|bytes?)\\b`` of the size rule, which tells ``16MB,`` and ``MB`` from
    ``BLOCK*`` and ``Bye``.

    >>> _tail(r"\\d+ ?(?:MB|B)\\b", ("B",))("BLOCK*"), _tail(r"\\d+ ?(?:MB|B)\\b", ("B",))("MB,")
    (None, <re.Match object; span=(0, 2), match='MB'>)
    """
    items = _sre_p.parse(regex)
    data = list(items)
    start = max((i + 1 for i, item in enumerate(data) if _walk([item])), default=0)
    tail = data[start:]
    if all(op is _sre_c.LITERAL for op, _ in tail):
        return None  # a string: `pieces` say as much, and where whitespace touches it
    if _most_selective(_clauses(tail)) != frozenset(needed) or _refers(tail):
        return None
    try:
        compiled = _sre_compiler.compile(_sre_p.SubPattern(items.state, tail), items.state.flags)
    except (re.error, TypeError, ValueError):  # (a form the compiler takes only whole)
        return None
    return compiled.search


_GROUP_REFERENCES = frozenset(
    getattr(_sre_c, name)
    for name in (
        "GROUPREF",
        "GROUPREF_EXISTS",
        "GROUPREF_IGNORE",
        "GROUPREF_LOC_IGNORE",
        "GROUPREF_UNI_IGNORE",
    )
    if hasattr(_sre_c, name)
)


def _refers(items: Any) -> bool:
    """Does `items` refer to a group (``(?P=x)``, ``\\1``, ``(?(1)a|b)``)?"""
    return _some(items, lambda op, _: op in _GROUP_REFERENCES)


def _token_gate(rules: tuple[_LineRule, ...]) -> Callable[[str], object] | None:
    """A search telling a token that holds a piece of some line rule (see `_pieces`), or None
    when a rule is not anchored and has no pieces: every line must then go through the rules.

    A line whose tokens pass none of it, nor the anchored rules' one match attempt, is left as
    it is by every line rule, in order: the first rule is skipped and the text is unchanged
    for the next. Its tokens come from the caches without a test per rule.
    """
    pieces: set[str] = set()
    tails: list[Callable[[str], object]] = []
    for rule in rules:
        if rule.tail is not None:
            tails.append(rule.tail)
        elif rule.pieces:
            pieces.update(rule.pieces)
        elif not _anchored(rule.regex.pattern):
            return None
    searches = ([re.compile("|".join(sorted(pieces))).search] if pieces else []) + tails
    if not searches:
        return re.compile(r"(?!)").search  # matches nothing
    if len(searches) == 1:
        return searches[0]

    def gate(token: str) -> object:
        for search in searches:
            found = search(token)
            if found is not None:
                return found
        return None

    return gate


def _first_chars(regexes: Iterable[str]) -> frozenset[str] | None:
    """The characters a match of one of the anchored `regexes` can start with (None: unsure).

    >>> sorted(_first_chars([r"^[IWEF]\\d{4} ", r"^x"]) or ()), _first_chars([r"^\\d"])
    (['E', 'F', 'I', 'W', 'x'], None)
    """
    chars: set[str] = set()
    c = _sre_c
    for regex in regexes:
        items = _sre_p.parse(regex)
        if items.state.flags & re.IGNORECASE or len(items) < 2 or items[0][0] is not c.AT:
            return None
        op, av = items[1]
        first = frozenset(chr(av)) if op is c.LITERAL else _class_chars(av) if op is c.IN else None
        if not first:
            return None
        chars |= first
    return frozenset(chars)


def _anchored(regex: str) -> bool:
    """Can `regex` only match at the start of the text (``^`` or ``\\A`` first, no MULTILINE)?

    >>> _anchored(r"^[IWEF]\\d{4} "), _anchored(r"(?m)^x"), _anchored(r"x|^y")
    (True, False, False)
    """
    items = _sre_p.parse(regex)
    if items.state.flags & re.MULTILINE or not len(items):
        return False
    op, av = items[0]
    c = _sre_c
    return op is c.AT and av in (c.AT_BEGINNING, c.AT_BEGINNING_STRING)


def starts_inside_words(regex: str) -> bool:
    """Can a match of `regex` start right after a word character? (True when unsure.)

    Most rules open on a word boundary (``\\b\\d``) or on a lookbehind that refuses a word
    character (``(?<![\\w.])``): inside a word they can never match, and the alternation of
    token rules skips them there at the cost of one test (see `_alternation`).

    >>> starts_inside_words(r"\\b\\d{4}-\\d\\d"), starts_inside_words(r"(?<![A-Za-z_])\\d+")
    (False, True)
    >>> starts_inside_words(r"(?<=[=:])null"), starts_inside_words(r"(?<=[a-z=])null")
    (False, True)
    """
    items = _sre_p.parse(regex)
    if items.state.flags & (re.IGNORECASE | re.ASCII | re.LOCALE):
        return True
    return _starts_inside_words(items)


def _starts_inside_words(items: Any, boundary: bool = False) -> bool:
    c = _sre_c
    for op, av in items:
        if op is c.AT:  # after a `\b`, the first character must not be a word one
            boundary = boundary or av is c.AT_BOUNDARY
        elif op is c.ASSERT_NOT and av[0] < 0 and _refuses_word_before(av[1]):
            return False
        elif op is c.ASSERT and av[0] < 0 and _non_word_char(av[1]):
            return False  # ``(?<=[=:])``: what comes before is no word character
        elif op in (c.ASSERT, c.ASSERT_NOT):
            continue  # zero-width: the match still starts here
        elif op is c.BRANCH:
            return any(_starts_inside_words(branch, boundary) for branch in av[1])
        elif op is c.SUBPATTERN and not av[1]:
            return _starts_inside_words(av[-1], boundary)
        else:
            return not (boundary and _word_only(op, av))
    return True


def _refuses_word_before(items: Any) -> bool:
    """Is `items` (a negative lookbehind) one character class that holds every word char?"""
    c = _sre_c
    if len(items) != 1 or items[0][0] is not c.IN:
        return False
    members = items[0][1]
    return (c.CATEGORY, c.CATEGORY_WORD) in members and all(op is not c.NEGATE for op, _ in members)


def _non_word_char(items: Any) -> bool:
    """Is `items` (a lookbehind) one character, of a class that holds no word character?"""
    c = _sre_c
    if len(items) != 1:
        return False
    op, av = items[0]
    if op is c.LITERAL:
        return _WORD.fullmatch(chr(av)) is None
    return op is c.IN and all(
        (o is c.LITERAL and _WORD.fullmatch(chr(a)) is None)
        or (o is c.RANGE and not any(_WORD.fullmatch(chr(x)) for x in range(a[0], a[1] + 1)))
        for o, a in av
    )


def _word_only(op: Any, av: Any) -> bool:
    """Does the item `op av` consume a word character first, whatever it matches?"""
    c = _sre_c
    if op is c.LITERAL:
        return _WORD.fullmatch(chr(av)) is not None
    if op in _REPEATS and av[0] >= 1 and len(av[2]) >= 1:
        return _word_only(*av[2][0])
    if op is c.IN:
        return bool(av) and all(_word_member(o, a) for o, a in av)
    return False


def _word_member(op: Any, av: Any) -> bool:
    c = _sre_c
    if op is c.CATEGORY:
        return av in (c.CATEGORY_WORD, c.CATEGORY_DIGIT)
    if op is c.LITERAL:
        return _WORD.fullmatch(chr(av)) is not None
    if op is c.RANGE:
        return all(_WORD.fullmatch(chr(x)) for x in range(av[0], av[1] + 1))
    return False


def requires_digit(regex: str) -> bool:
    """Does every match of `regex` need a digit in the text (its lookarounds' text included)?

    A token without digits (most words) is masked by the rules that do not: the alternation
    is tried at every position of the token, so each rule left out saves a try per character.

    >>> requires_digit(r"(?<![\\w.])\\d+ms"), requires_digit(r"\\b(?=[a-f]*\\d)[a-f0-9]{8,}")
    (True, True)
    >>> requires_digit(r"(?:/[\\w.-]+){2,}")
    False
    """
    return _needs_digit(_sre_p.parse(regex))


def _needs_digit(items: Any) -> bool:
    c = _sre_c
    for op, av in items:
        if op is c.LITERAL and 48 <= av <= 57:
            return True
        if op is c.IN and _digit_class(av):
            return True
        if op is c.SUBPATTERN and _needs_digit(av[-1]):
            return True
        if op in _REPEATS and av[0] >= 1 and _needs_digit(av[2]):
            return True
        if op is c.BRANCH and all(_needs_digit(branch) for branch in av[1]):
            return True
        if op is c.ASSERT and _needs_digit(av[1]):  # a lookaround sees the same token
            return True
    return False


def _digit_class(items: Any) -> bool:
    """Is the class ``[...]`` made of digits only (``\\d``, ``[0-9]``, ``[1-5]``)?"""
    c = _sre_c
    return bool(items) and all(
        (op is c.CATEGORY and av is c.CATEGORY_DIGIT)
        or (op is c.LITERAL and 48 <= av <= 57)
        or (op is c.RANGE and av[0] >= 48 and av[1] <= 57)
        for op, av in items
    )


@dataclass(frozen=True, slots=True)
class _Alternation:
    """Token rules compiled into one regex, and what `re.sub` replaces a match with."""

    regex: re.Pattern[str]
    repl: str | Callable[[re.Match[str]], str]


def _alternation(rules: tuple[MaskRule, ...]) -> _Alternation | None:
    """One regex for `rules`, tried in order at each position (None when there is no rule).

    The regex engine tries every branch of an alternation at every position of a token, so:
    consecutive rules that cannot start inside a word share one ``(?<!\\w)`` test (rule order
    is kept, so the first rule that matches at a position still wins); and when every rule
    has the same mask (the default rules) the branches are not capturing groups, whose marks
    are saved and restored at each try.
    """
    if not rules:
        return None
    inside = [starts_inside_words(rule.regex) for rule in rules]
    bodies = [r.regex if i else _after_guard(r.regex) for r, i in zip(rules, inside, strict=True)]
    masks = {rule.mask for rule in rules}
    if len(masks) == 1:
        branches = [f"(?:{body})" for body in bodies]
        return _Alternation(re.compile(_guard_runs(branches, inside)), masks.pop())
    branches = [f"(?P<_m{i}>{body})" for i, body in enumerate(bodies)]
    regex = re.compile(_guard_runs(branches, inside))
    by_group = {regex.groupindex[f"_m{i}"]: rule.mask for i, rule in enumerate(rules)}
    return _Alternation(regex, lambda m: by_group[m.lastindex or 0])


def _after_guard(regex: str) -> str:
    """`regex` without the ``\\b`` it opens with, when the ``(?<!\\w)`` guard makes it redundant.

    After a non-word character, ``\\b`` only says that a word character comes next, which a
    first item that consumes word characters only (``\\d``, ``[A-Za-z]``) says too: one test
    less per position, and a branch that opens with one character class is skipped by the
    regex engine without entering it.

    >>> _after_guard(r"\\b\\d{4}-"), _after_guard(r"\\b(?:ab|-)x"), _after_guard(r"\\b\\da|\\bb")
    ('\\\\d{4}-', '\\\\b(?:ab|-)x', '\\\\b\\\\da|\\\\bb')
    """
    if not regex.startswith("\\b"):
        return regex
    items = _sre_p.parse(regex)
    c = _sre_c
    if len(items) >= 2 and items[0] == (c.AT, c.AT_BOUNDARY) and _word_only(*items[1]):
        return regex[2:]
    return regex


def _guard_runs(branches: list[str], inside: list[bool]) -> str:
    """``a|b|c|d`` → ``(?<!\\w)(?:a|b)|c|(?<!\\w)(?:d)`` when a, b and d never start in a word."""
    out: list[str] = []
    run: list[str] = []
    for branch, starts_inside in zip(branches, inside, strict=True):
        if starts_inside:
            if run:
                out.append(r"(?<!\w)(?:" + "|".join(run) + ")")
                run = []
            out.append(branch)
        else:
            run.append(branch)
    if run:
        out.append(r"(?<!\w)(?:" + "|".join(run) + ")")
    return "|".join(out)


# Characters that may cut a token in pieces masked apart (`_Separators`): punctuation only.
_SEPARATOR_CANDIDATES = "!\"#&'()*;<>?^`{|}"


def _sees(items: Any, ch: str) -> bool:
    """Can some item of `items` match `ch`, or tell it from no character at all? (True when
    unsure: a negated class, ``.``, an anchor other than ``\\b``, a group reference...)"""
    c = _sre_c
    o = ord(ch)
    for op, av in items:
        if op is c.LITERAL:
            if av == o:
                return True
        elif op is c.IN:
            if _class_accepts(av, ch):
                return True
        elif op is c.AT:
            if av not in (c.AT_BOUNDARY, c.AT_NON_BOUNDARY):
                return True
        elif op is c.SUBPATTERN:
            if _sees(av[-1], ch):
                return True
        elif op in _REPEATS:
            if _sees(av[2], ch):
                return True
        elif op is c.BRANCH:
            if any(_sees(branch, ch) for branch in av[1]):
                return True
        elif op in (c.ASSERT, c.ASSERT_NOT):
            if _sees(av[1], ch):
                return True
        elif op is c.ATOMIC_GROUP:
            if _sees(av, ch):
                return True
        else:  # NOT_LITERAL, ANY, GROUPREF...: may match anything
            return True
    return False


def _class_accepts(members: Any, ch: str) -> bool:
    """Does the class ``[...]`` of `members` match `ch` (True for a negated one: unsure)?"""
    c = _sre_c
    o = ord(ch)
    for op, av in members:
        if op is c.NEGATE:
            return True
        if op is c.LITERAL and av == o:
            return True
        if op is c.RANGE and av[0] <= o <= av[1]:
            return True
        if op is c.CATEGORY and av not in (c.CATEGORY_DIGIT, c.CATEGORY_WORD, c.CATEGORY_SPACE):
            return True  # \\D, \\W, \\S
        if op is c.CATEGORY and re.fullmatch(_CATEGORY_REGEX[av], ch):
            return True
        if op not in (c.LITERAL, c.RANGE, c.CATEGORY):
            return True
    return False


_CATEGORY_REGEX = {
    _sre_c.CATEGORY_DIGIT: r"\d",
    _sre_c.CATEGORY_WORD: r"\w",
    _sre_c.CATEGORY_SPACE: r"\s",
}


@dataclass(frozen=True, slots=True)
class _Separators:
    """Characters no token rule can match or tell from the end of a text (``#`` for the
    default rules), so that a token cut at them masks as its pieces masked apart, joined
    by them: ``a=17##42`` as ``a=17``, ``42``, each of a digit shape met before.

    A rule that sees them anyway (``\\S+`` of the URL rule) is no obstacle in a token
    without the strings every match of that rule contains (``://``): the token is cut only
    then.
    """

    split: Callable[[str], list[str]]  # pieces and runs of separators, alternately
    search: Callable[[str], object]
    guards: tuple[str, ...]  # a token holding one of these is masked whole


def _separators(rules: tuple[MaskRule, ...]) -> _Separators | None:
    """The `_Separators` of token `rules` (None: no character is safe to cut at)."""
    parsed = [(rule, _sre_p.parse(rule.regex)) for rule in rules]
    if any(items.state.flags & (re.IGNORECASE | re.ASCII | re.LOCALE) for _, items in parsed):
        return None
    seps = set(_SEPARATOR_CANDIDATES)
    guards: list[str] = []
    for rule, items in parsed:
        seen = {ch for ch in seps if _sees(items, ch)}
        needed = required_strings(rule.regex)
        if not seen:
            continue
        if needed and not any(ch in s for s in needed for ch in seps):
            guards += needed  # the rule may match a separator only in a token holding these
        else:
            seps -= seen
    if not seps:
        return None
    chars = re.escape("".join(sorted(seps)))
    return _Separators(
        re.compile(f"([{chars}]+)").split, re.compile(f"[{chars}]").search, tuple(guards)
    )


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What a rule list compiles to: immutable, so every `Masker` of the same rules shares it."""

    line: tuple[_LineRule, ...]
    token_gate: Callable[[str], object] | None  # see `_token_gate`
    anchored: tuple[Callable[[str], object], ...]  # match of the line rules without pieces
    starts: frozenset[str] | None  # what their matches can start with (None: unsure)
    token: _Alternation | None
    token_no_digit: _Alternation | None
    digit_agnostic: bool
    separators: _Separators | None


@functools.lru_cache(maxsize=16)
def _compile(rules: tuple[MaskRule, ...]) -> _Compiled:
    """Compile and analyse `rules` once per distinct rule list (parsing them is not cheap)."""
    line_rules = tuple(r for r in rules if _can_match_whitespace(r.regex))
    token_rules = tuple(r for r in rules if r not in line_rules)
    # Line rules run one after the other: alone, a rule that starts with a literal or a
    # class lets the regex engine skip to its candidates, which an alternation does not.
    # A rule is skipped when the line holds none of the strings every match contains.
    line = tuple(map(_line_rule, line_rules))
    return _Compiled(
        line=line,
        token_gate=_token_gate(line),
        anchored=tuple(r.regex.match for r in line if not r.pieces),
        starts=_first_chars(r.regex.pattern for r in line if not r.pieces),
        token=_alternation(token_rules),
        token_no_digit=_alternation(tuple(r for r in token_rules if not requires_digit(r.regex))),
        digit_agnostic=not any(_has_literal_digit(r.regex) for r in rules),
        separators=_separators(token_rules),
    )


class Masker:
    """Applies an ordered list of `MaskRule`s: line rules once per line, token rules per token.

    Tokens that hold a piece of a line rule (see `_token_gate`) are cached apart (`_held`,
    `_held_shapes`): a line made of tokens found in `_cache` and `_shapes` is known to be left
    alone by the line rules, which it then skips. Each held cache shares its bound
    (`cache_size` entries) with its counterpart: the four hold at most twice `cache_size`.
    """

    def __init__(self, rules: tuple[MaskRule, ...], cache_size: int = 100_000) -> None:
        self.rules = rules
        compiled = _compile(rules)
        self._line = compiled.line
        self._gate = compiled.token_gate
        self._anchored = compiled.anchored
        self._starts = compiled.starts
        self._token = compiled.token
        self._token_no_digit = compiled.token_no_digit
        self.digit_agnostic = compiled.digit_agnostic
        self._separators = compiled.separators
        self._cache: dict[str, str] = {}  # tokens without a piece of a line rule
        self._shapes: dict[bytes, str] = {}  # ... with digits, by shape
        self._held: dict[str, str] = {}  # tokens holding a piece
        self._held_shapes: dict[bytes, str] = {}
        self._cache_size = max(cache_size, 16)
        self.changed = False  # whether the line rules changed the line `tokens` masked last

    @classmethod
    def from_rules(cls, rules: Iterable[MaskRule]) -> Masker:
        """Compile `rules` (already validated by the config loader)."""
        return cls(tuple(rules))

    def tokens(self, text: str, rules_first: bool = False) -> list[str]:
        """The masked tokens of `text` (whitespace-separated); `changed` tells whether the
        line rules changed it.

        `rules_first`: the caller expects the line rules to change `text` (they changed its
        source's previous line): they run before it is split, which then happens once. The
        tokens are the same either way.
        """
        gate = self._gate
        if gate is None or rules_first:
            return self._line_tokens(text)
        self.changed = False
        starts = self._starts
        if starts is None or text[:1] in starts:
            for match in self._anchored:  # (one attempt at the start each)
                if match(text) is not None:
                    return self._line_tokens(text)
        parts = text.split()
        out = list(map(self._cache.get, parts))
        n = out.count(None)  # the few tokens not cached are found by `list.index`, in C
        if n:
            i = -1
            shapes = self._shapes if self.digit_agnostic else None
            held = self._held
            for _ in range(n):
                i = out.index(None, i + 1)
                # Most are tokens with digits of a shape seen before: looked up here.
                token = parts[i]
                raw = token.encode()
                shape = raw.translate(_ZERO_DIGITS)
                masked = shapes.get(shape) if shapes is not None and shape != raw else None
                if masked is None:
                    if token in held or gate(token) is not None:  # line rules may apply
                        lined = self._apply_line_rules(text)
                        if lined is text:  # (`sub` returns its text when nothing matched)
                            return self._fill(parts, out)
                        self.changed = True
                        return self._line_tokens(lined, ruled=True)
                    masked = self._mask_token(token, raw, shape, held=False)
                out[i] = masked
        return out  # type: ignore[return-value]

    def _apply_line_rules(self, text: str) -> str:
        """`text` after the line rules, in order (a rule runs when its quick test passes)."""
        for regex, mask, needles, search, _, _ in self._line:
            if needles:
                for needle in needles:
                    if needle in text:
                        break
                else:
                    continue
            elif search is not None and search(text) is None:
                continue
            text = regex.sub(mask, text)
        return text

    def _line_tokens(self, text: str, ruled: bool = False) -> list[str]:
        """`tokens` of a line that the line rules may change (`ruled`: they ran already)."""
        if not ruled:
            lined = self._apply_line_rules(text)
            self.changed = lined is not text
            text = lined
        parts = text.split()
        return self._fill(parts, list(map(self._cache.get, parts)))

    def _fill(self, parts: list[str], out: list[str | None]) -> list[str]:
        """`out` (masked `parts`, None where not known yet) completed from every cache."""
        held, shapes, held_shapes = self._held, self._shapes, self._held_shapes
        agnostic = self.digit_agnostic
        i = -1
        for _ in range(out.count(None)):
            i = out.index(None, i + 1)
            token = parts[i]
            raw = token.encode()
            shape = raw.translate(_ZERO_DIGITS)
            masked = None
            if agnostic and shape != raw:
                masked = shapes.get(shape)
                if masked is None:
                    masked = held_shapes.get(shape)
            if masked is None:
                masked = held.get(token)
                if masked is None:
                    masked = self._mask_token(token, raw, shape)
            out[i] = masked
        return out  # type: ignore[return-value]

    def mask(self, text: str) -> str:
        """`text` masked, its tokens joined by single spaces."""
        return " ".join(self.tokens(text))

    def _mask_token(
        self, token: str, raw: bytes = b"", shape: bytes = b"", held: bool | None = None
    ) -> str:
        """Mask one token that is not in the cache (`raw`: its UTF-8, `shape`: its digits
        zeroed, `held`: whether it holds a piece of a line rule, when the caller knows).

        A token with digits is masked by the shape of its digits when that is safe (the rules
        treat all digits alike and no digit survived masking), and is then not cached itself:
        its digits rarely come back, and would push the words out of the cache.
        """
        if not raw:
            raw = token.encode()
            shape = raw.translate(_ZERO_DIGITS)
        if held is None:
            held = self._gate is not None and self._gate(token) is not None
        cache, other = (self._held, self._cache) if held else (self._cache, self._held)
        if shape != raw and self.digit_agnostic:
            shapes, others = (
                (self._held_shapes, self._shapes) if held else (self._shapes, self._held_shapes)
            )
            masked = shapes.get(shape)
            if masked is None:
                masked = self._mask_fresh(token, digits=True)
                if _DIGIT.search(masked) is None:
                    self._remember(shapes, shape, masked, others)
                    return masked
                self._remember(cache, token, masked, other)  # a digit survived (``ssh2``)
            return masked
        # No shape to go by: only 0s, no digit (if ASCII), or rules that name a digit.
        masked = self._mask_fresh(token, shape != raw or b"0" in raw or len(raw) != len(token))
        self._remember(cache, token, masked, other)
        return masked

    def _mask_fresh(self, token: str, digits: bool) -> str:
        """Run the token rules over `token` (only those that need no digit if it has none)."""
        rules = self._token if digits else self._token_no_digit
        if rules is None:
            return token
        seps = self._separators
        if seps is not None and seps.search(token) and not any(g in token for g in seps.guards):
            parts = seps.split(token)  # pieces and separators, alternately
            pieces = parts[0::2]  # (an empty piece masks to itself: no rule matches "")
            parts[0::2] = self._fill(pieces, list(map(self._cache.get, pieces)))
            out = "".join(parts)
        else:
            out = rules.regex.sub(rules.repl, token)
        if out.count(WILDCARD) > 1:
            out = _COLLAPSE.sub(WILDCARD, out)
        return out

    def _remember(
        self, cache: dict[Any, str], key: Any, value: str, partner: dict[Any, str]
    ) -> None:
        """Cache `value`; bounded in bytes (a token longer than `MAX_CACHED_TOKEN` is masked
        each time it comes) and in entries: `cache` and its `partner` (the tokens, or shapes,
        that hold a piece of a line rule and those that do not) share `cache_size` entries,
        the older half of the fuller one dropped when full (amortised O(1))."""
        if len(key) > MAX_CACHED_TOKEN:
            return
        if len(cache) + len(partner) >= self._cache_size:
            fuller = cache if len(cache) >= len(partner) else partner
            for k in list(fuller)[: len(fuller) // 2]:
                del fuller[k]
        cache[key] = value


__all__ = ["DEFAULT_MASKING", "WILDCARD", "Masker"]
