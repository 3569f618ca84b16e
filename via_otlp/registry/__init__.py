"""The registry stage: VIA's memory in PostgreSQL, shared by instances and steered by operators.

- `Registry` (store.py): the facade the app and the control API use;
- `PatchSet`, `Patch`, `PatchRule` (patches.py): the pure matcher of operator rules;
- `SchemaTracker` (schemas.py): pure schema inference and drift detection;
- `RegistryWriter` (writer.py): the bounded write-behind buffer;
- `EmbeddedPostgres` (embedded.py): a private server when no DSN is configured;
- `apply_migrations` (migrate.py): numbered plain-SQL migrations under an advisory lock.
"""

from via_otlp.registry.config import RegistryConfig, SchemaDriftConfig
from via_otlp.registry.embedded import EmbeddedPostgres
from via_otlp.registry.migrate import apply_migrations
from via_otlp.registry.patches import EMPTY_PATCHES, Patch, PatchRule, PatchSet
from via_otlp.registry.patchstore import PatchStore
from via_otlp.registry.records import (
    AnomalyPage,
    AnomalyRecord,
    EvaluationRow,
    IncidentPage,
    KnownTemplate,
    RegistryState,
    RegistryStatus,
    SchemaRow,
    WriterStats,
)
from via_otlp.registry.schemas import (
    AttributeScope,
    AttributeStat,
    SchemaChange,
    SchemaRecord,
    SchemaTracker,
    SourceSchema,
    TemplateRate,
)
from via_otlp.registry.store import Registry
from via_otlp.registry.writer import RegistryWriter

__all__ = [
    "EMPTY_PATCHES",
    "AnomalyPage",
    "AnomalyRecord",
    "AttributeScope",
    "AttributeStat",
    "EmbeddedPostgres",
    "EvaluationRow",
    "IncidentPage",
    "KnownTemplate",
    "Patch",
    "PatchRule",
    "PatchSet",
    "PatchStore",
    "Registry",
    "RegistryConfig",
    "RegistryState",
    "RegistryStatus",
    "RegistryWriter",
    "SchemaChange",
    "SchemaDriftConfig",
    "SchemaRecord",
    "SchemaRow",
    "SchemaTracker",
    "SourceSchema",
    "TemplateRate",
    "WriterStats",
    "apply_migrations",
]
