"""Fixtures: the registry tests' real PostgreSQL (embedded, or VIA_TEST_DSN)."""

from tests.registry.conftest import data_dir, db_dsn, pg_server  # noqa: F401
