"""patterns/: log body → template id → rhythm hash. Pure, no I/O."""

from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.patterns.stage import PatternStage

__all__ = ["PatternStage", "rhythm_hash"]
