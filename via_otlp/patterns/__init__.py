"""patterns/: log body → template id → rhythm hash. Pure, no I/O."""

from typing import TYPE_CHECKING

from via_otlp.lazy import lazy_exports

if TYPE_CHECKING:
    from via_otlp.patterns.rhythm import rhythm_hash
    from via_otlp.patterns.stage import PatternStage

__all__ = ["PatternStage", "rhythm_hash"]

# Imported when first read (see via_otlp/lazy.py): `via_otlp.config` reads only the config,
# and `serve` reads it before it begins the registry's start.
__getattr__ = lazy_exports(
    __name__,
    {"PatternStage": "via_otlp.patterns.stage", "rhythm_hash": "via_otlp.patterns.rhythm"},
)
