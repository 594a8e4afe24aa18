"""The jobs tests run on the storage tests' migrated databases (SQLite, and PostgreSQL when available)."""

from tests.storage.conftest import engine

__all__ = ["engine"]
