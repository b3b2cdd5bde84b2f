"""What a served forecast depends on: a symbol's active model version and its last bar."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

__all__ = ["serving_state"]


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
