"""Alembic environment: runs on the connection mmstudio hands over (see storage/db.py)."""

from __future__ import annotations

import re
from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

from mmstudio.storage.tables import Base

config = context.config
target_metadata = Base.metadata

# Full-text search (migration 0003): on SQLite FTS5 virtual tables, their shadow tables and a rowid map;
# on PostgreSQL GIN expression indexes. Raw SQL, not declared in tables.py, so autogenerate must not
# propose dropping them.
SEARCH_NAME = re.compile(r"^\w+_fts(_\w+)?$")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ in ("table", "index") and name is not None and SEARCH_NAME.match(name))


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata, render_as_batch=True, include_name=include_name, **kwargs
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # `alembic` on the command line (developers writing a migration): a sync URL from the ini.
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
