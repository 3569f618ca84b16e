"""The streaming template miner: one `SourceMiner` per source identity, pure (no I/O).

It starts from Drain (a prefix tree keyed by token count and first token, then the most similar
template in the leaf) and changes what Drain's users report:

- variables inside a token are found: merging ``user=alice`` with ``user=bob`` gives
  ``user=<*>``, not ``<*>``, so templates keep their punctuation;
- a constant word that differs (``VM Started`` / ``VM Paused``, ``from NEW to RUNNING``) is never
  turned into a variable: two capitalised or upper-case words that differ keep lines apart;
- a line whose first token is a variable that masking missed (``chrome.exe open through...``)
  still finds its template in the other leaves of the same length;
- a variable spanning a different number of tokens (a two-word name, a free-text reason) joins
  the template it fits, where the variable absorbs the extra tokens, instead of splitting it;
- a template keeps its id when it generalises; the id is derived from the first template text
  so that it also survives a restart without a snapshot when the same shape comes first.

The common case (a line whose shape was seen before) skips masking and the tree: a bounded
cache maps the line with its digits zeroed to the template.

>>> from via_otlp.patterns.config import PatternsConfig
>>> m = SourceMiner(PatternsConfig())
>>> a = m.add("login user=alice from 10.0.0.1 (TID:7f3a)")
>>> b = m.add("login user=bob from 10.0.0.2 (TID:9c2e)")
>>> a is b, a.id == b.id, a.text
(True, True, 'login user=<*> from <*> (TID:<*>)')
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import xxhash

from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.masking import MAX_CACHED_TOKEN, WILDCARD, Masker
from via_otlp.patterns.prepare import prepare
from via_otlp.patterns.spans import SpanText, Work, fits, split_pattern, token_fits

_K = TypeVar("_K")
_V = TypeVar("_V")
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_HAS_DIGIT = re.compile(r"\d")
# A token that is a word of constant shape: letters (one upper-case at least), `_`, `.`, `-`.
_CONSTANT_WORD = re.compile(r"[A-Za-z][A-Za-z_.\-]*[A-Za-z]\W?|[A-Z]")
_VERSION = re.compile(r"\d+(?:\.\d+)*")
_SOFT_WORD = re.compile(r"[A-Za-z][A-Za-z0-9']*[,.;:!?]?")
_PREFIX_END = frozenset("=:([{<'\"#@/-")
FLOOD_ID = "flood"
_MAX_LEAF_SCAN = 512  # most recent templates of a leaf compared with a line
_MAX_SCAN = 64  # templates compared when the first token does not lead to a match
_MAX_SPAN_CANDIDATES = 64  # templates tried when the token count differs
# What one fast-path cache entry costs besides its key: dict slot, key object, value tuple.
CACHE_ENTRY_BYTES = 160
_MAX_CACHED_CHARS = 4096  # longer lines skip the fast-path caches (they would hold their text)


def hint_id(text: str) -> str:
    """The id of a template named by the sender: ``h`` + 9 hex digits of its text's xxh64."""
    return "h" + xxhash.xxh64_hexdigest(text.encode())[:9]


_NO_KEY: tuple[int, str] = (0, "")


class Named:
    """A template the sender named (`log.record.template`): its id, its text as given, its line
    count, and the rhythm hash of the severity it was last seen at (set by the patterns stage).

    Mined templates (`Template`) add tokens, age, lookup keys and a merge forward; a sender-named
    one is never indexed, compared, generalised nor merged, so it keeps these five slots only:
    72 B instead of 120 B, and a source model's sender-named templates are one per profile.
    """

    __slots__ = ("count", "id", "rhythm", "severity", "text")

    def __init__(self, tid: str, text: str, count: int = 0) -> None:
        self.id = tid
        self.text = text
        self.count = count
        # The rhythm hash of this template at `severity` (the one it was last seen at), set by
        # the patterns stage: 16 bytes here instead of a cache entry of ~120 bytes per template.
        self.severity: str | None = None
        self.rhythm = ""

    def __repr__(self) -> str:
        return f"Named({self.id!r}, {self.text!r}, count={self.count})"


class Template(Named):
    """A template: its stable id, its tokens (``<*>`` marks variables) and its line count."""

    __slots__ = ("alive", "born", "forward", "key", "key2", "tokens")

    def __init__(self, tid: str, tokens: list[str], count: int = 0, born: int = 0) -> None:
        self.id = tid
        self.tokens = tokens
        self.text = " ".join(tokens)
        self.count = count
        self.born = born  # creation order in its source model: a merge keeps the oldest id
        self.alive = True
        self.forward: Template | None = None  # set when merged into another template
        # Lookup keys, set when the template is indexed (`SourceMiner._index`); sender-named
        # templates never are, and at 100,000 of them the two tuples cost 11 MB.
        self.key = self.key2 = _NO_KEY
        self.severity = None
        self.rhythm = ""

    @staticmethod
    def named(tid: str, text: str, count: int = 0) -> Named:
        """A template the sender named (`log.record.template`): its text as it was given."""
        return Named(tid, text, count)

    def resolve(self) -> Template:
        """The template this one was merged into (itself if it was not)."""
        template = self
        while template.forward is not None:
            template = template.forward
        return template

    def __repr__(self) -> str:
        return f"Template({self.id!r}, {self.text!r}, count={self.count})"


@dataclass(slots=True)
class MinerStats:
    """Counters of one source model (summed over sources by `PatternStage.stats`)."""

    lines: int = 0
    templates: int = 0
    created: int = 0
    evictions: int = 0
    merges: int = 0
    fast_path_hits: int = 0
    flooded_lines: int = 0
    flooding: bool = False


def _token_key(token: str) -> str:
    """How a token indexes the tree: ``<*>`` for a variable, ``key=`` for ``key=value``."""
    if WILDCARD in token:
        return WILDCARD
    i = token.find("=")
    return token[: i + 1] if i > 0 else token


def _leaf_key(tokens: list[str]) -> tuple[int, str]:
    return (len(tokens), _token_key(tokens[0]) if tokens else "")


def _second_key(tokens: list[str]) -> tuple[int, str]:
    return (len(tokens), _token_key(tokens[1]) if len(tokens) > 1 else "")


def _is_constant_word(token: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006
    """True for words such as ``Started``, ``RUNNING``, ``SCREEN_ON``: never made variables."""
    hit = cache.get(token)
    if hit is None:
        hit = (
            _CONSTANT_WORD.fullmatch(token) is not None
            and not token.islower()
            and not _HAS_DIGIT.search(token)
        )
        if len(cache) < 100_000 and len(token) <= MAX_CACHED_TOKEN:
            cache[token] = hit
    return hit


def _is_word(token: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006
    """A plain or constant word (never a free variable when compared with another word)."""
    hit = cache.get(token)
    if hit is None:
        hit = _SOFT_WORD.fullmatch(token) is not None or _is_constant_word(token)
        if len(cache) < 100_000 and len(token) <= MAX_CACHED_TOKEN:
            cache[token] = hit
    return hit


def merge_token(a: str, b: str) -> str:
    """The most specific token pattern that both `a` (maybe a pattern) and `b` fit.

    The constant part kept before the variable must end on punctuation (``user=``, ``(``) and
    the part kept after it must be punctuation only (``)``, ``,``), so a merge never cuts a
    word in two.

    >>> merge_token("user=alice", "user=bob"), merge_token("(TID:<*>)", "(TID:x)")
    ('user=<*>', '(TID:<*>)')
    >>> merge_token("chrome.exe", "firefox.exe"), merge_token("<*>", "x")
    ('<*>', '<*>')
    """
    if a == WILDCARD or b == WILDCARD:
        return WILDCARD
    pa, sa = split_pattern(a) if WILDCARD in a else (a, a)
    pb, sb = split_pattern(b) if WILDCARD in b else (b, b)
    n = 0
    limit = min(len(pa), len(pb))
    while n < limit and pa[n] == pb[n]:
        n += 1
    while n > 0 and pa[n - 1] not in _PREFIX_END:
        n -= 1
    prefix = pa[:n]
    m = 0
    limit = min(len(sa), len(sb))
    while m < limit and sa[-1 - m] == sb[-1 - m] and not sa[-1 - m].isalnum():
        m += 1
    suffix = sa[len(sa) - m :] if m else ""
    room = min(len(a), len(b))
    if len(prefix) + len(suffix) >= room:
        suffix = ""
        if len(prefix) >= room:
            prefix = ""
    return f"{prefix}{WILDCARD}{suffix}"


class Diff(enum.Enum):
    """How two different tokens at the same position differ."""

    FREE = 1  # a variable: generalise at once (ids, paths, key=value values)
    SOFT = 2  # two plain words: a variable only once several values were seen
    HARD = 3  # two constant words (``Started`` / ``Paused``): never a variable


def diff_kind(a: str, b: str, cache: dict[tuple[str, str], Diff] = {}) -> Diff:  # noqa: B006
    """Classify the difference between template token `a` and line token `b`.

    >>> diff_kind("Started", "Paused"), diff_kind("alice", "bob"), diff_kind("uid=alice", "uid=bob")
    (<Diff.HARD: 3>, <Diff.SOFT: 2>, <Diff.FREE: 1>)
    """
    if WILDCARD in a:
        return Diff.FREE
    kind = cache.get((a, b))
    if kind is None:
        kind = _diff_kind(a, b)
        if len(a) + len(b) <= MAX_CACHED_TOKEN:  # bounded in bytes as well as entries
            if len(cache) >= 200_000:
                cache.clear()
            cache[(a, b)] = kind
    return kind


def _diff_kind(a: str, b: str) -> Diff:
    merged = merge_token(a, b)
    prefix, suffix = split_pattern(merged)
    da = a[len(prefix) : len(a) - len(suffix)]
    db = b[len(prefix) : len(b) - len(suffix)]
    if _is_constant_word(da) and _is_constant_word(db):
        return Diff.HARD
    if _VERSION.fullmatch(da) and _VERSION.fullmatch(db):
        return Diff.HARD  # numbers that masking kept on purpose (``HTTP/1.1``): a version
    if prefix.endswith("="):
        return Diff.FREE
    if _SOFT_WORD.fullmatch(da) and _SOFT_WORD.fullmatch(db):
        return Diff.SOFT
    return Diff.FREE


def _after_key(token: str) -> bool:
    """Is `token` a key whose value follows as the next token (``user:``, ``name=``)?"""
    return len(token) > 1 and token[-1] in ":=" and token[-2].isalpha()


def _compare(
    template: list[str], tokens: list[str], keys: bool = False, floor: float = 0.0
) -> tuple[float, int]:
    """(score, soft position) of a line against a template of the same length.

    The score is the fraction of the template's constant tokens that the line matches (-1 when
    a constant word differs, or when more than one plain word differs); the soft position is
    the one plain word that differs, or -1. With `keys`, a plain word after a key
    (``user: alice``, ``mode= fast``) is a value, not a word that needs several values seen.
    The comparison stops (-1) as soon as the score cannot reach `floor` any more.
    """
    constants = 0
    hits = 0
    soft = -1
    last = len(template) - 1
    for i, (a, b) in enumerate(zip(template, tokens, strict=True)):
        if a == b:
            if a != WILDCARD:
                constants += 1
                hits += 1
            continue
        if a == WILDCARD:
            continue
        constants += 1
        if WILDCARD in a and token_fits(a, b):
            hits += 1
            continue
        rest = last - i  # at best, every token left is a constant that matches
        if hits + rest < floor * (constants + rest):
            return -1.0, -1
        kind = diff_kind(a, b)
        if kind is Diff.HARD:
            return -1.0, -1
        if kind is Diff.SOFT and not (keys and i and _after_key(template[i - 1])):
            if soft >= 0:
                return -1.0, -1
            soft = i
    if constants == 0:
        return (1.0, -1) if all(WILDCARD in t for t in tokens) else (-1.0, -1)
    if hits == 0:
        return -1.0, -1
    return hits / constants, soft


def _covers(template: list[str], tokens: list[str]) -> bool:
    """Does every token of `tokens` (another template) fit `template`?"""
    return len(template) == len(tokens) and all(
        a == b or (WILDCARD in a and token_fits(a, b))
        for a, b in zip(template, tokens, strict=True)
    )


def _generalise(template: Template, tokens: list[str]) -> bool:
    """Widen `template` so that `tokens` fits it; True if it changed."""
    changed = False
    tt = template.tokens
    for i, (a, b) in enumerate(zip(tt, tokens, strict=True)):
        if a != b and not (WILDCARD in a and token_fits(a, b)):
            tt[i] = merge_token(a, b)
            changed = True
    if changed:
        template.text = " ".join(tt)
    return changed


def _witness(body: str, masked: list[str]) -> tuple[tuple[int, str], ...] | None:
    """Where the digits that survived masking come from: (index, word) of `body.split()`.

    Masking treats all digits alike (`Masker.digit_agnostic`), so another line of the same
    digit shape masks to the same text when these words are the same in it. None when a
    masked word with digits is not a word of the line as it is (a digit kept inside a
    partly masked word): such lines are cached by their exact text only.
    """
    # the masked words that kept digits (`isalpha` first: a word of letters holds none)
    kept = {t for t in masked if t != WILDCARD and not t.isalpha() and _HAS_DIGIT.search(t)}
    found = [(i, word) for i, word in enumerate(body.split()) if word in kept]
    if len({word for _, word in found}) < len(kept):
        return None
    return tuple(found)


def _kept_key(shape: bytes, kept: Iterable[str]) -> bytes:
    """The `_by_kept` key of a line: its digit shape and the words that kept digits, the
    shape's length first so that no two (shape, words) pairs make the same key."""
    return b"%d\x00%b\x00%b" % (len(shape), shape, "\x00".join(kept).encode())


def _collapse_spans(tokens: list[str]) -> list[str]:
    """``a <*> <*> b`` → ``a <*> b``: a variable of variable length is one ``<*>``."""
    out: list[str] = []
    for tok in tokens:
        if not (tok == WILDCARD and out and out[-1] == WILDCARD):
            out.append(tok)
    return out


class SourceMiner:
    """The template model of one source: prefix tree, LRU-bounded templates, fast-path cache."""

    def __init__(self, config: PatternsConfig, masker: Masker | None = None) -> None:
        self.config = config
        self.masker = masker or Masker.from_rules(config.masking)
        self.templates: OrderedDict[str, Template] = OrderedDict()
        # templates named by the senders (`log.record.template`), by text; LRU-bounded (`hinted`)
        self._hinted: dict[str, Named] = {}  # by text, least recently used first
        # the validated [id, text, count] entries of `load_state`, made templates on first use:
        # a restore of 100,000 of them does not build one (most sources send later, if at all)
        self._hinted_state: list[tuple[str, str, int]] | None = None
        self.leaves: dict[tuple[int, str], list[Template]] = {}
        self.by_second: dict[tuple[int, str], list[Template]] = {}
        self.by_first: dict[str, list[Template]] = {}
        self._spans: dict[str, SpanText] = {}  # templates as texts, when a line is shorter
        self.work = Work()  # steps of the span matcher (a work budget, for tests)
        self.on_merge: Callable[[str, Template], None] | None = None  # (absorbed id, survivor)
        # (new id, the template it differs from in one plain word): a word variable's new value
        # before it has enough values to generalise; a detector does not call it a new pattern.
        self.on_split: Callable[[str, Template], None] | None = None
        self._split_of: Template | None = None
        self._born = 0
        self._values: dict[tuple[str, str, int], set[str]] = {}
        self._by_shape: dict[bytes, Template] = {}
        self._by_body: dict[str, Template] = {}
        # Lines whose digits survived masking: by shape, where the words that kept them are;
        # by shape and those words, the template (`_kept_key`).
        self._kept_at: dict[bytes, tuple[int, ...]] = {}
        self._by_kept: dict[bytes, Template] = {}
        self._by_masked: dict[str, tuple[Template, bool]] = {}
        self.cache_bytes = 0  # what the five caches above hold, about (keys + entry overhead)
        self._agnostic = self.masker.digit_agnostic
        self._rules_first = False  # the line rules changed the last line masked: run them first
        # a body up to this long has at most `max_tokens` tokens, none longer than allowed
        self._long = min(2 * config.max_tokens - 2, config.max_token_chars)
        self.stats = MinerStats()
        self._window_end = config.flood_window
        self._window_new = 0
        self._flood: Template | None = None

    # -- the per-line path ---------------------------------------------------------------

    def add(self, body: str) -> Template:
        """The template of `body`, learning from it (a new template, or a wider one)."""
        stats = self.stats
        stats.lines += 1
        if stats.lines >= self._window_end:
            self._close_window()
        # Fast path: a line whose digits-zeroed shape was seen maps to the same template (the
        # masking rules treat all digits alike, see `Masker.digit_agnostic`).
        shape = body.encode().translate(_ZERO_DIGITS) if self._agnostic else body.encode()
        hit = self._by_shape.get(shape)
        if hit is None and self._kept_at:
            at = self._kept_at.get(shape)
            if at is not None:
                parts = body.split(None, at[-1] + 1)  # (the words up to the last one read)
                hit = self._by_kept.get(_kept_key(shape, [parts[i] for i in at]))
        if hit is None and self._by_body:
            hit = self._by_body.get(body)
        if hit is not None and hit.alive:
            stats.fast_path_hits += 1
            hit.count += 1
            if hit is not self._flood:
                self.templates.move_to_end(hit.id)
            return hit
        return self._add_new_shape(body, shape)

    @property
    def hinted(self) -> dict[str, Named]:
        """The templates named by the senders, by text, least recently used first."""
        if self._hinted_state is not None:
            self._build_hinted()
        return self._hinted

    def _build_hinted(self) -> None:
        """Make the templates of the loaded entries (`load_state`), as loading did before."""
        entries, self._hinted_state = self._hinted_state or [], None
        hinted, named = self._hinted, Template.named
        for tid, text, count in entries:
            hinted[text] = named(tid, text, count)

    def add_hint(self, text: str) -> Named:
        """The template a sender named for a line (``h`` + a hash of its text), counted."""
        if self._hinted_state is not None:  # (`hinted`, inline: once per line)
            self._build_hinted()
        hinted = self._hinted
        template = hinted.pop(text, None)  # put back last: the most recently used
        if template is None:
            if len(text) > _MAX_CACHED_CHARS:  # kept by a short key: bounded in bytes
                long_text, text = text, text[:_MAX_CACHED_CHARS]
                template = hinted.pop(text, None) or Template.named(hint_id(long_text), text)
            else:
                template = Template.named(hint_id(text), text)
        # Keyed by its own text, not by the line's: the line's copy of it goes with the batch
        # (a key replaced at each use held a second copy of every text, ~60 B per profile).
        hinted[template.text] = template
        self._bound_hinted()
        template.count += 1
        return template

    def _bound_hinted(self) -> None:
        """Forget the least recently used sender-named template beyond the bound. (A plain
        dict in use order: an OrderedDict cost 53 B more per template.)"""
        hinted = self._hinted  # (its callers read `hinted` first: the loaded ones are built)
        if len(hinted) > self.config.max_templates_per_source:
            del hinted[next(iter(hinted))]

    def recover(self, tid: str, text: str) -> bool:
        """Add a template known from elsewhere with its id (the registry, after a crash lost
        what was learnt since the last snapshot), unless this model has that id; lines that fit
        it then get that id again, not a new one. True if added."""
        if not text.strip():
            return False
        if tid.startswith("h"):  # named by the sender (`hint_id`)
            if text in self.hinted:
                return False
            self.hinted[text] = Template.named(tid, text)
            self._bound_hinted()
            return True
        if tid in self.templates:
            return False
        self._insert(Template(tid, text.split(" "), born=self._born))
        self._born += 1
        return True

    def _add_new_shape(self, body: str, shape: bytes) -> Template:
        """`add` for a line whose shape was not seen lately: mask it (its masked text may be)."""
        text = body
        if "\n" in body or len(body) > self._long:  # (`_tokens_differ`, inline)
            config = self.config
            text = prepare(body, config.max_tokens, config.max_token_chars)
        masker = self.masker
        tokens = masker.tokens(text, self._rules_first) or [""]
        self._rules_first = masker.changed  # lines of a source are alike: so is the next one
        key = " ".join(tokens)
        known = self._by_masked.get(key)
        if known is not None and known[0].alive:
            template, digit_free = known
            self.stats.fast_path_hits += 1
            if template is not self._flood:  # (`_touch`, inline: most new shapes come here)
                self.templates.move_to_end(template.id)
        else:
            template = self._learn(tokens)
            # Whether a digit survived masking (``ssh2``) is remembered with the masked text.
            digit_free = _HAS_DIGIT.search(key) is None
            self._remember(self._by_masked, key, (template, digit_free))
        template.count += 1
        if digit_free:
            self._remember(self._by_shape, shape, template)
            return template
        # Digits survived masking (``ssh2``, ``HTTP/1.1``): lines of this shape mask alike when
        # the words that kept them are the same, which a look at those words tells.
        witness = None if self._tokens_differ(body) else _witness(body, tokens)
        if witness is not None:
            # Where digits survive depends on the digit shape alone; many lines of one shape
            # keep different words (``user1199``, ``user4059``): each such set is an entry.
            at = tuple(i for i, _ in witness)
            self._remember(self._kept_at, shape, at)
            self._remember(self._by_kept, _kept_key(shape, [w for _, w in witness]), template)
        else:  # only the exact line is safe to cache
            self._remember(self._by_body, body, template)
        return template

    def _learn(self, tokens: list[str]) -> Template:
        """The template of masked `tokens` not seen lately: matched in the tree, or a new one."""
        self._split_of = None
        template = self._match(tokens)
        if template is not None:
            self._touch(template)
            return template
        self._window_new += 1
        if self.stats.flooding:
            self.stats.flooded_lines += 1
            return self._flood_template()
        template = self._create(tokens)
        if self._split_of is not None and self.on_split is not None:
            self.on_split(template.id, self._split_of)
        return template

    def _touch(self, template: Template) -> None:
        """Mark `template` most recently used (the flood template is in no LRU order)."""
        if template is not self._flood:
            self.templates.move_to_end(template.id)

    def _tokens_differ(self, body: str) -> bool:
        """Are the tokens masked other than `body.split()` (a multi-line or long body)?"""
        return "\n" in body or len(body) > self._long

    def _remember(self, cache: dict[_K, _V], key: _K, template: _V) -> None:
        """Cache a line (exact, or masked) → template; bounded, oldest half dropped when full.

        A line longer than `_MAX_CACHED_CHARS` is not cached: a cache bounded in entries only
        would otherwise hold whatever size the senders' bodies have.
        """
        size = self.config.fast_path_size
        n = len(key)  # type: ignore[arg-type]
        if size == 0 or n > _MAX_CACHED_CHARS:
            return
        if len(cache) >= size:
            dropped = list(cache)[: size // 2]  # amortised O(1), no per-hit bookkeeping
            for k in dropped:
                del cache[k]
            self.cache_bytes -= sum(map(len, dropped)) + CACHE_ENTRY_BYTES * len(dropped)  # type: ignore[arg-type]
        if key not in cache:
            self.cache_bytes += n + CACHE_ENTRY_BYTES
        cache[key] = template

    def clear_caches(self) -> int:
        """Forget the fast-path caches (the model stays); returns the bytes they held."""
        freed = self.cache_bytes
        for cache in (self._by_shape, self._by_body, self._kept_at, self._by_kept, self._by_masked):
            cache.clear()
        self.cache_bytes = 0
        return freed

    # -- matching -----------------------------------------------------------------------

    def _match(self, tokens: list[str]) -> Template | None:
        """The template `tokens` belongs to (widened to fit it), or None for a new one."""
        key = _leaf_key(tokens)
        candidates = self.leaves.get(key, [])[-_MAX_LEAF_SCAN:]
        if key[1] != WILDCARD:
            candidates += self.leaves.get((key[0], WILDCARD), [])[-_MAX_LEAF_SCAN:]
        best, soft = self._best(tokens, candidates)
        if best is None:
            best = self._best_any_first(tokens)
        if best is None:
            return self._best_span(tokens)
        if soft >= 0 and not self._enough_values(best, tokens, soft):
            self._split_of = best
            return None
        if _generalise(best, tokens):
            self._rekey(best)
            best = self._absorb_siblings(best)
        return best

    def _best(self, tokens: list[str], candidates: list[Template]) -> tuple[Template | None, int]:
        """The most similar template (a full fit preferred to a plain-word difference)."""
        best: Template | None = None
        best_rank = (self.config.similarity, -1)
        best_soft = -1
        keys = self.config.key_values
        for template in candidates:
            score, soft = _compare(template.tokens, tokens, keys, best_rank[0])
            rank = (score, 0 if soft >= 0 else 1)
            if rank > best_rank or (best is None and score >= best_rank[0]):
                best, best_rank, best_soft = template, rank, soft
                if score == 1.0 and soft < 0:
                    break
        return best, best_soft

    def _best_any_first(self, tokens: list[str]) -> Template | None:
        """Same length, other first token: the first token may be a variable masking missed."""
        if WILDCARD in tokens[0] or len(tokens) < 3:
            return None
        best: Template | None = None
        best_score = max(self.config.similarity, 0.7)
        key2 = _second_key(tokens)
        pool = self.by_second.get(key2, [])[-_MAX_SCAN:]
        if key2[1] != WILDCARD:
            pool += self.by_second.get((key2[0], WILDCARD), [])[-_MAX_SCAN:]
        wordy = _is_word(tokens[0])
        for template in pool:
            first = template.tokens[0]
            if first == tokens[0] or (wordy and _is_word(first)):
                continue  # two words differ softly or hard, never freely: skip the work
            if diff_kind(first, tokens[0]) is not Diff.FREE:
                continue
            score, soft = _compare(template.tokens, tokens, self.config.key_values, best_score)
            if score >= best_score and soft < 0:
                best, best_score = template, score
        return best

    def _enough_values(self, template: Template, tokens: list[str], pos: int) -> bool:
        """Record the plain word seen at `pos`; True once enough distinct ones were seen."""
        tt = template.tokens
        sig = (" ".join(tt[:pos]), " ".join(tt[pos + 1 :]), pos)
        values = self._values.get(sig)
        if values is None:
            if len(self._values) >= 4 * self.config.max_templates_per_source:
                self._values.clear()
            values = self._values[sig] = {tt[pos]}
        values.add(tokens[pos])
        return len(values) >= self.config.min_word_values

    def _absorb_siblings(self, template: Template) -> Template:
        """Merge the templates that the widened `template` now covers; return the survivor.

        The survivor is the oldest of them, with the widened tokens: the id a detector has
        known longest stays, and the younger ids forward to it (each merge is reported to
        `on_merge`, so a detector can forget a young template's novelty).
        """
        covered = [
            other
            for other in self.leaves.get(template.key, [])
            if other is not template and _covers(template.tokens, other.tokens)
        ]
        if not covered:
            return template
        survivor = min(covered, key=lambda t: t.born)
        if survivor.born > template.born:
            survivor = template
        if survivor is not template:
            self._unindex(survivor)
            survivor.tokens = list(template.tokens)
            survivor.text = template.text
            self._index(survivor)
            covered.remove(survivor)
            covered.append(template)
        for other in covered:
            survivor.count += other.count
            self._drop(other, forward=survivor)
            self.stats.merges += 1
            if self.on_merge is not None:
                self.on_merge(other.id, survivor)
        return survivor

    def _best_span(self, tokens: list[str]) -> Template | None:
        """A template of another length that fits once a bare ``<*>`` spans several tokens.

        A ``<*>`` spans one token at least, so only the shorter side's variables can absorb the
        longer side's extra tokens: one direction is tried per template (see `spans.fits`,
        linear in the tokens: no regex is built from a template).
        """
        pool = self.by_first.get(_leaf_key(tokens)[1], [])
        if not pool:
            return None
        line: SpanText | None = None
        work = self.work
        for template in pool[-_MAX_SPAN_CANDIDATES:]:
            n = len(template.tokens)
            if n < len(tokens):
                if line is None:
                    line = SpanText(tokens)
                if fits(template.tokens, line, work):
                    self._reshape(template, _collapse_spans(template.tokens))
                    return template
            elif n > len(tokens):
                text = self._spans.get(template.id)
                if text is None:
                    text = self._spans[template.id] = SpanText(template.tokens)
                if fits(tokens, text, work):
                    self._reshape(template, _collapse_spans(tokens))
                    return template
        return None

    # -- bookkeeping --------------------------------------------------------------------

    def _create(self, tokens: list[str]) -> Template:
        text = " ".join(tokens)
        tid = xxhash.xxh64_hexdigest(text.encode())[:10]
        while tid in self.templates or tid == FLOOD_ID:
            tid = xxhash.xxh64_hexdigest((tid + text).encode())[:10]
        template = Template(tid, list(tokens), born=self._born)
        self._born += 1
        self._insert(template)
        self.stats.created += 1
        return template

    def _insert(self, template: Template) -> None:
        self.templates[template.id] = template
        self._index(template)
        self.stats.templates = len(self.templates)
        if len(self.templates) > self.config.max_templates_per_source:
            self._evict()

    def _index(self, template: Template) -> None:
        """Add `template` to the lookup indexes under its current keys."""
        template.key = key = _leaf_key(template.tokens)
        template.key2 = key2 = _second_key(template.tokens)
        self.leaves.setdefault(key, []).append(template)
        self.by_second.setdefault(key2, []).append(template)
        self.by_first.setdefault(key[1], []).append(template)

    def _unindex(self, template: Template) -> None:
        self.leaves[template.key].remove(template)
        self.by_second[template.key2].remove(template)
        self.by_first[template.key[1]].remove(template)
        self._spans.pop(template.id, None)

    def _evict(self) -> None:
        _, old = self.templates.popitem(last=False)
        self.templates[old.id] = old  # `_drop` removes it from every index
        self._drop(old, forward=None)
        self.stats.evictions += 1

    def _drop(self, template: Template, forward: Template | None) -> None:
        """Remove `template` from every index (evicted, or merged into `forward`)."""
        template.alive = False
        template.forward = forward
        del self.templates[template.id]
        self._unindex(template)
        self.stats.templates = len(self.templates)

    def _rekey(self, template: Template) -> None:
        """After generalising: re-index the template under its new keys."""
        self._unindex(template)
        self._index(template)

    def _reshape(self, template: Template, tokens: list[str]) -> None:
        """Give `template` new tokens (maybe a new length), keeping its id."""
        if tokens == template.tokens:
            return
        self._unindex(template)
        template.tokens = list(tokens)
        template.text = " ".join(tokens)
        self._index(template)

    def _flood_template(self) -> Template:
        if self._flood is None:
            self._flood = Template(FLOOD_ID, [WILDCARD])
        return self._flood

    def _close_window(self) -> None:
        """Judge the last window: a source making mostly new templates is flooding."""
        ratio = self._window_new / self.config.flood_window
        self.stats.flooding = ratio > self.config.flood_ratio
        self._window_end = self.stats.lines + self.config.flood_window
        self._window_new = 0

    # -- persistence --------------------------------------------------------------------

    def to_state(self) -> dict[str, object]:
        """JSON-serialisable state: templates from least to most recently used."""
        return {
            "templates": [[t.id, t.tokens, t.count, t.born] for t in self.templates.values()],
            "flooding": self.stats.flooding,
            "hinted": [[t.id, t.text, t.count] for t in self.hinted.values()],
            # words seen at a position: without them a restored model would merge siblings later
            # than the original, and the two would give different ids to the same line
            "values": [
                [pre, post, pos, sorted(vals)] for (pre, post, pos), vals in self._values.items()
            ],
        }

    def load_state(self, state: Any) -> None:
        """Rebuild the model from `to_state` output (caches start empty)."""
        if not isinstance(state, dict) or not isinstance(state.get("templates"), list):
            raise ValueError("a source state must be an object with a 'templates' list")
        templates, index = self.templates, self._index
        room = self.config.max_templates_per_source
        try:
            for i, item in enumerate(state["templates"]):
                # [id, tokens, count, born]; states written before `born` existed list templates
                # oldest-used first, which is the best guess of their age.
                tid, tokens, count, born = item if len(item) == 4 else (*item, i)
                if not (
                    isinstance(tid, str)
                    and isinstance(tokens, list)
                    and tokens
                    and isinstance(count, int)
                    and isinstance(born, int)
                ):
                    raise ValueError(f"malformed template entry {item!r}")
                template = Template(tid, list(map(str, tokens)), count, born)
                if len(templates) < room:  # `_insert`, which cannot evict yet: inline
                    templates[tid] = template
                    index(template)
                else:
                    self._insert(template)
                if born >= self._born:
                    self._born = born + 1
        finally:
            self.stats.templates = len(templates)
        self.stats.flooding = bool(state.get("flooding", False))
        # the sender-named templates are made on first use (`hinted`); until then, their entries
        entries = self._hinted_state = self._hinted_state or []
        add = entries.append
        for item in state.get("hinted", []):
            tid, text, count = item
            if not (isinstance(tid, str) and isinstance(text, str) and isinstance(count, int)):
                raise ValueError(f"malformed hinted template entry {item!r}")
            add((tid, text, count))
        if not entries:
            self._hinted_state = None
        for item in state.get("values", []):
            pre, post, pos, vals = item
            if not (
                isinstance(pre, str)
                and isinstance(post, str)
                and isinstance(pos, int)
                and isinstance(vals, list)
            ):
                raise ValueError(f"malformed word-values entry {item!r}")
            self._values[(pre, post, pos)] = {str(v) for v in vals}
