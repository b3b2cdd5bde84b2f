"""Events: an append-only log other layers react to (e.g. retraining on new bars)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from kitrade.data.db import one_row
from kitrade.schemas import Event

if TYPE_CHECKING:
    import psycopg

__all__ = ["BARS_INGESTED", "count_events", "count_ingests_past", "list_events", "record_event"]

BARS_INGESTED = "bars_ingested"


def record_event(
    conn: psycopg.Connection, *, kind: str, symbol: str | None, payload: dict[str, Any]
) -> int:
    """Append an event; returns its id."""
    row = conn.execute(
        "INSERT INTO events (kind, symbol, payload) VALUES (%s, %s, %s) RETURNING id",
        (kind, symbol, Jsonb(payload)),
    ).fetchone()
    return int(one_row(row, "recording an event")[0])


def list_events(
    conn: psycopg.Connection,
    *,
    kind: str | None = None,
    symbol: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Event]:
    """Events in id order, filtered by kind/symbol, after ``after_id``."""
    sql = "SELECT id, kind, symbol, payload, created_at FROM events WHERE id > %s"
    params: list[object] = [after_id]
    if kind is not None:
        sql += " AND kind = %s"
        params.append(kind)
    if symbol is not None:
        sql += " AND symbol = %s"
        params.append(symbol)
    sql += " ORDER BY id LIMIT %s"
    params.append(limit)
    return [
        Event(id=r[0], kind=r[1], symbol=r[2], payload=r[3], created_at=r[4])
        for r in conn.execute(sql, params).fetchall()
    ]


def count_ingests_past(conn: psycopg.Connection, *, symbol: str, ts: datetime) -> int:
    """How many ``bars_ingested`` events of ``symbol`` brought bars later than ``ts``."""
    row = conn.execute(
        "SELECT count(*) FROM events WHERE kind = %s AND symbol = %s"
        " AND (payload->>'last_ts')::timestamptz > %s",
        (BARS_INGESTED, symbol, ts),
    ).fetchone()
    return int(one_row(row, "counting ingests")[0])


def count_events(conn: psycopg.Connection, *, kind: str, symbol: str, since: Any = None) -> int:
    """How many events of ``kind`` for ``symbol`` (created after ``since`` if given)."""
    sql = "SELECT count(*) FROM events WHERE kind = %s AND symbol = %s"
    params: list[object] = [kind, symbol]
    if since is not None:
        sql += " AND created_at > %s"
        params.append(since)
    return int(one_row(conn.execute(sql, params).fetchone(), "counting events")[0])
