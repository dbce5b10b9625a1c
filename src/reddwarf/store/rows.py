"""Small helpers shared by the repositories."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, text
from sqlalchemy.orm import DeclarativeBase, Session


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE run through the session (those always give a CursorResult)."""
    return cast("CursorResult[Any]", result).rowcount


def table(row: type[DeclarativeBase]) -> Table:
    """The Core table of a row class. Hot paths run Core statements built once at import and given their
    values as parameters: building a statement (and its cache key) per call costs more than running it."""
    return cast(Table, row.__table__)


def xact_lock(session: Session, key: str) -> None:
    """Hold the lock named `key` until the session's transaction ends (PostgreSQL's transaction-scoped advisory
    lock). On SQLite a write unit of work (BEGIN IMMEDIATE) is already serial: nothing to take."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
