"""Band calibration kept online: one row per (model version, symbol), updated as bars close.

The state is ``kitrade.training.conformal.ConformalState``'s JSON; the summary is what a
forecast answer shows of it (``CalibrationSummary``), small enough to read on every cache miss.
A version's calibration at the end of its evaluation travels with its artifact; a row here
exists once new bars have updated it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    import psycopg

__all__ = ["calibration_summary", "lock_calibration", "save_calibration"]


def lock_calibration(
    conn: psycopg.Connection, *, version: str, symbol: str
) -> dict[str, Any] | None:
    """The stored state of (``version``, ``symbol``), None when there is none yet; holds a
    transaction-level lock on the pair so two updaters take bars in one after the other."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 12))", (f"{version}/{symbol}",))
    row = conn.execute(
        "SELECT state FROM forecast_calibration WHERE version = %s AND symbol = %s",
        (version, symbol),
    ).fetchone()
    return None if row is None else dict(row[0])


def save_calibration(
    conn: psycopg.Connection,
    *,
    version: str,
    symbol: str,
    state: dict[str, Any],
    summary: dict[str, Any],
    through: datetime,
) -> None:
    """Store the state of (``version``, ``symbol``) calibrated through bar ``through``."""
    conn.execute(
        "INSERT INTO forecast_calibration (version, symbol, state, summary, through)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version, symbol) DO UPDATE SET"
        " state = EXCLUDED.state, summary = EXCLUDED.summary, through = EXCLUDED.through,"
        " updated_at = now()",
        (version, symbol, Jsonb(state), Jsonb(summary), through),
    )


def calibration_summary(
    conn: psycopg.Connection, *, version: str, symbol: str
) -> dict[str, Any] | None:
    """The summary of (``version``, ``symbol``)'s online calibration, None before any update."""
    row = conn.execute(
        "SELECT summary FROM forecast_calibration WHERE version = %s AND symbol = %s",
        (version, symbol),
    ).fetchone()
    return None if row is None else dict(row[0])
