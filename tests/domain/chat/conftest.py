"""Fixtures for Chat Studio repository tests: the migrated `engine` (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.storage.conftest import engine

__all__ = ["engine"]
