"""Timestamps as stored: always UTC (SQLite keeps no zone, so one is put back on the way out)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value (SQLite drops the zone) is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
