"""The patterns stage: fill a LogBatch's template columns and rhythm hashes.

Interim version (masking only): the template is the body with UUIDs, IPs, hex ids and numbers
masked, and its id is a hash of that text. The streaming miner replaces `_template_of`.
If the record carries `log.record.template` (the Collector's drain processor), that is used.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import xxhash

from via_otlp.model import LogBatch
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.rhythm import rhythm_hash

_MASK = re.compile(
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<ip>\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"
    r"|(?P<hex>\b(?:0x)?[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b(?:0x)?[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\d[0-9a-fA-F]*\b)"
    r"|(?P<num>(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?)"
)
_CACHE_SIZE = 65_536


def mask_body(body: str) -> str:
    """The interim template: variables replaced by ``<*>``.

    >>> mask_body("user 42 from 10.0.0.1:443 req 7f3a9c2e")
    'user <*> from <*> req <*>'
    """
    return _MASK.sub("<*>", body)


class PatternStage:
    """Assigns template ids, templates and rhythm hashes to every record of a batch."""

    def __init__(self, config: PatternsConfig | None = None) -> None:
        self.config = config or PatternsConfig()
        self._templates: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._hashes: dict[tuple[str, str, str], str] = {}

    def _template_of(self, body: str) -> tuple[str, str]:
        hit = self._templates.get(body)
        if hit is not None:
            return hit
        template = mask_body(body)
        result = (xxhash.xxh64_hexdigest(template.encode())[:12], template)
        self._templates[body] = result
        if len(self._templates) > _CACHE_SIZE:
            self._templates.popitem(last=False)
        return result

    def apply(self, batch: LogBatch) -> None:
        """Fill `template_id`, `template` and `rhythm_hash` for every record."""
        ids: list[str] = []
        templates: list[str] = []
        hashes: list[str] = []
        keys = [s.key for s in batch.sources]
        hash_cache = self._hashes
        for src, sev, body, hint in zip(
            batch.source_index, batch.severity, batch.body, batch.template_hint, strict=True
        ):
            if hint:
                tid, template = xxhash.xxh64_hexdigest(hint.encode())[:12], hint
            else:
                tid, template = self._template_of(body)
            key = (keys[src], sev, tid)
            h = hash_cache.get(key)
            if h is None:
                if len(hash_cache) > _CACHE_SIZE:
                    hash_cache.clear()
                h = hash_cache[key] = rhythm_hash(*key)
            ids.append(tid)
            templates.append(template)
            hashes.append(h)
        batch.template_id, batch.template, batch.rhythm_hash = ids, templates, hashes

    def snapshot(self) -> dict[str, object]:
        """Versioned, JSON-serialisable state (the interim stage keeps none worth saving)."""
        return {"version": 1, "kind": "interim-masking"}

    def restore(self, state: dict[str, object]) -> None:
        """Restore what `snapshot` returned."""
