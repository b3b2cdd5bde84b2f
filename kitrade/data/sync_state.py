"""Per-symbol sync state: last bar, last run, status, error."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from kitrade.schemas import SyncState

if TYPE_CHECKING:
    import psycopg

__all__ = ["advance", "get_sync_state", "list_sync_states", "mark_finished", "mark_running"]

_COLS = "symbol, source, last_bar, last_run, status, error, rows_last_run"


def _row(r: tuple) -> SyncState:
    return SyncState(**dict(zip(_COLS.split(", "), r, strict=True)))


def get_sync_state(conn: psycopg.Connection, *, symbol: str) -> SyncState | None:
    """State of one symbol, or None if it never synced."""
    r = conn.execute(f"SELECT {_COLS} FROM sync_state WHERE symbol = %s", (symbol,)).fetchone()
    return _row(r) if r else None


def list_sync_states(conn: psycopg.Connection) -> list[SyncState]:
    """All symbols' states."""
    return [_row(r) for r in conn.execute(f"SELECT {_COLS} FROM sync_state ORDER BY symbol")]


def mark_running(conn: psycopg.Connection, *, symbol: str, source: str) -> None:
    """Record that a sync of ``symbol`` started."""
    conn.execute(
        "INSERT INTO sync_state (symbol, source, last_run, status, error, rows_last_run)"
        " VALUES (%s, %s, now(), 'running', NULL, 0)"
        " ON CONFLICT (symbol) DO UPDATE SET source = EXCLUDED.source, last_run = now(),"
        " status = 'running', error = NULL, rows_last_run = 0",
        (symbol, source),
    )


def advance(conn: psycopg.Connection, *, symbol: str, last_bar: datetime, rows: int) -> None:
    """Move ``last_bar`` forward (never back) inside an ingest batch's transaction."""
    conn.execute(
        "UPDATE sync_state SET last_bar = GREATEST(coalesce(last_bar, %s), %s),"
        " rows_last_run = rows_last_run + %s WHERE symbol = %s",
        (last_bar, last_bar, rows, symbol),
    )


def mark_finished(
    conn: psycopg.Connection, *, symbol: str, status: str, error: str | None = None
) -> None:
    """Record the end of a sync (``ok``, ``up_to_date`` or ``failed``)."""
    conn.execute(
        "UPDATE sync_state SET status = %s, error = %s, last_run = now() WHERE symbol = %s",
        (status, error, symbol),
    )
