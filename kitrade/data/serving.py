"""What a served forecast depends on: a symbol's active model version and its last bar."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["active_artifacts", "active_version_id", "serving_state"]


def serving_state(conn: psycopg.Connection, *, symbol: str) -> tuple[str | None, datetime | None]:
    """``(active version, last bar time)`` of ``symbol``; either is None when there is none."""
    row = conn.execute(
        "SELECT (SELECT version FROM model_versions WHERE symbol = %s AND status = 'active'),"
        " (SELECT max(ts) FROM bars WHERE symbol = %s)",
        (symbol, symbol),
    ).fetchone()
    if row is None:
        return None, None
    return row[0], row[1]


def active_artifacts(conn: psycopg.Connection) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """``(symbol, version, artifact path, metrics)`` of every active model version."""
    rows = conn.execute(
        "SELECT symbol, version, artifact_path, metrics FROM model_versions WHERE status = 'active'"
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def active_version_id(conn: psycopg.Connection, *, symbol: str) -> str | None:
    """The id of ``symbol``'s active model version, or None."""
    row = conn.execute(
        "SELECT version FROM model_versions WHERE symbol = %s AND status = 'active'", (symbol,)
    ).fetchone()
    return None if row is None else str(row[0])
