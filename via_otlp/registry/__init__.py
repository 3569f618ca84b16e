"""The registry stage: VIA's memory in PostgreSQL, shared by instances and steered by operators.

- `Registry` (store.py): the facade the app and the control API use;
- `PatchSet`, `Patch`, `PatchRule` (patches.py): the pure matcher of operator rules;
- `SchemaTracker` (schemas.py): pure schema inference and drift detection;
- `RegistryWriter` (writer.py): the bounded write-behind buffer;
- `EmbeddedPostgres` (embedded.py): a private server when no DSN is configured;
- `apply_migrations` (migrate.py): numbered plain-SQL migrations under an advisory lock.
"""

from typing import TYPE_CHECKING

from via_otlp.lazy import lazy_exports

if TYPE_CHECKING:
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

# Imported when first read: see via_otlp/lazy.py.
__getattr__ = lazy_exports(
    __name__,
    {
        "RegistryConfig": "via_otlp.registry.config",
        "SchemaDriftConfig": "via_otlp.registry.config",
        "EmbeddedPostgres": "via_otlp.registry.embedded",
        "apply_migrations": "via_otlp.registry.migrate",
        "EMPTY_PATCHES": "via_otlp.registry.patches",
        "Patch": "via_otlp.registry.patches",
        "PatchRule": "via_otlp.registry.patches",
        "PatchSet": "via_otlp.registry.patches",
        "PatchStore": "via_otlp.registry.patchstore",
        "AnomalyPage": "via_otlp.registry.records",
        "AnomalyRecord": "via_otlp.registry.records",
        "EvaluationRow": "via_otlp.registry.records",
        "IncidentPage": "via_otlp.registry.records",
        "KnownTemplate": "via_otlp.registry.records",
        "RegistryState": "via_otlp.registry.records",
        "RegistryStatus": "via_otlp.registry.records",
        "SchemaRow": "via_otlp.registry.records",
        "WriterStats": "via_otlp.registry.records",
        "AttributeScope": "via_otlp.registry.schemas",
        "AttributeStat": "via_otlp.registry.schemas",
        "SchemaChange": "via_otlp.registry.schemas",
        "SchemaRecord": "via_otlp.registry.schemas",
        "SchemaTracker": "via_otlp.registry.schemas",
        "SourceSchema": "via_otlp.registry.schemas",
        "TemplateRate": "via_otlp.registry.schemas",
        "Registry": "via_otlp.registry.store",
        "RegistryWriter": "via_otlp.registry.writer",
    },
)
