"""Recorded retraining triggers (``retrain_triggers``): why a symbol was retrained.

The rules that find triggers live in ``kitrade.training.retrain``; this module
only stores and lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    import psycopg

__all__ = ["insert_trigger", "list_triggers"]

_KEYS = ("id", "symbol", "reason", "detail", "run_id", "created_at")


def insert_trigger(
    conn: psycopg.Connection,
    *,
    symbol: str,
    reason: str,
    detail: dict[str, Any],
    run_id: str | None,
) -> None:
    """Store one trigger with the run that answers it."""
    conn.execute(
        "INSERT INTO retrain_triggers (symbol, reason, detail, run_id) VALUES (%s, %s, %s, %s)",
        (symbol, reason, Jsonb(detail), run_id),
    )


def list_triggers(
    conn: psycopg.Connection, *, symbol: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recorded triggers, newest first."""
    sql = "SELECT id, symbol, reason, detail, run_id, created_at FROM retrain_triggers"
    params: list[object] = []
    if symbol is not None:
        sql += " WHERE symbol = %s"
        params.append(symbol)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    return [dict(zip(_KEYS, r, strict=True)) for r in conn.execute(sql, params).fetchall()]
