"""A migrated database engine for repository tests: SQLite, and a real PostgreSQL when available."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mmstudio.storage.db import create_engine, migrate
from tests.conftest import blank_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = await blank_postgres_database(request.getfixturevalue("postgres_admin_url"))
    engine = create_engine(url)
    await migrate(engine)
    yield engine
    await engine.dispose()
