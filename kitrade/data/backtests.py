"""Backtests and their point-in-time forecasts in PostgreSQL.

Tables (migration 4): ``backtests`` — one row per requested backtest with its
status (queued, running, failed, done), progress, error and result JSON —
and ``backtest_forecasts`` — the walk-forward forecasts, keyed by
``(fold_key, symbol, issued_at, step)`` so reruns upsert the same rows and
other strategies reuse them instead of retraining. Plain keyword-only
functions over an explicit connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from kitrade.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BACKTEST_STATUSES",
    "BacktestRecord",
    "create_backtest",
    "get_backtest",
    "list_backtests",
    "load_forecasts",
    "mark_done",
    "mark_failed",
    "mark_running",
    "pin_period_end",
    "set_progress",
    "store_forecasts",
    "stored_decisions",
    "strategy_kind",
]

BACKTEST_STATUSES = ("queued", "running", "failed", "done")
_COLS = (
    "id",
    "strategy_name",
    "spec",
    "symbols",
    "timeframe",
    "period_start",
    "period_end",
    "n_folds",
    "model_overrides",
    "costs",
    "status",
    "progress",
    "error",
    "result",
    "created_at",
    "started_at",
    "finished_at",
)
_SELECT = ", ".join(_COLS)
_LEVELS = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")
#: rows per upsert statement.
_BATCH = 20_000


class BacktestRecord(BaseModel):
    """A stored backtest."""

    id: int
    strategy_name: str | None
    spec: dict[str, Any]
    symbols: list[str]
    timeframe: str
    period_start: datetime | None
    period_end: datetime | None
    n_folds: int
    model_overrides: dict[str, Any]
    costs: dict[str, Any]
    status: str
    progress: float
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _record(row: tuple) -> BacktestRecord:
    return BacktestRecord(**dict(zip(_COLS, row, strict=True)))


def create_backtest(
    conn: psycopg.Connection,
    *,
    strategy_name: str | None,
    spec: dict[str, Any],
    symbols: list[str],
    timeframe: str,
    period_start: datetime | None,
    period_end: datetime | None,
    n_folds: int,
    model_overrides: dict[str, Any] | None = None,
    costs: dict[str, Any] | None = None,
) -> BacktestRecord:
    """Record a queued backtest and return it."""
    from psycopg.types.json import Jsonb

    sql = (  # noqa: S608 - a constant column list
        "INSERT INTO backtests (strategy_name, spec, symbols, timeframe, period_start,"
        " period_end, n_folds, model_overrides, costs)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING "
    ) + _SELECT
    row = conn.execute(
        sql,
        (
            strategy_name,
            Jsonb(spec),
            symbols,
            timeframe,
            period_start,
            period_end,
            n_folds,
            Jsonb(model_overrides or {}),
            Jsonb(costs or {}),
        ),
    ).fetchone()
    assert row is not None  # noqa: S101 - INSERT ... RETURNING always returns the row
    return _record(row)


def get_backtest(conn: psycopg.Connection, *, backtest_id: int) -> BacktestRecord:
    """One backtest by id.

    Raises:
        NotFoundError: no backtest has that id.
    """
    sql = f"SELECT {_SELECT} FROM backtests WHERE id = %s"  # noqa: S608 - constant columns
    row = conn.execute(sql, (backtest_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"backtest {backtest_id} not found")
    return _record(row)


def list_backtests(
    conn: psycopg.Connection, *, status: str | None = None, limit: int = 100
) -> list[BacktestRecord]:
    """The newest backtests first (optionally only those with ``status``)."""
    if status is not None and status not in BACKTEST_STATUSES:
        raise InvalidInputError(
            f"status: expected one of {list(BACKTEST_STATUSES)}, was {status!r}"
        )
    if not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit: expected 1..10000, was {limit}")
    sql = f"SELECT {_SELECT} FROM backtests"  # noqa: S608 - constant columns
    params: list[object] = []
    if status is not None:
        sql += " WHERE status = %s"
        params.append(status)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    return [_record(r) for r in conn.execute(sql, params).fetchall()]


def _update(conn: psycopg.Connection, backtest_id: int, sets: str, params: tuple) -> None:
    row = conn.execute(
        f"UPDATE backtests SET {sets} WHERE id = %s RETURNING id",  # noqa: S608 - callers' constants
        (*params, backtest_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"backtest {backtest_id} not found")


def mark_running(conn: psycopg.Connection, *, backtest_id: int) -> None:
    """Status running, progress and any earlier error or result cleared (a rerun starts clean)."""
    _update(
        conn,
        backtest_id,
        "status = 'running', progress = 0, error = NULL, result = NULL,"
        " started_at = now(), finished_at = NULL",
        (),
    )


def pin_period_end(conn: psycopg.Connection, *, backtest_id: int, end: datetime) -> None:
    """Fix an open period's end (the last bar when the backtest first ran) so reruns match."""
    _update(conn, backtest_id, "period_end = coalesce(period_end, %s)", (end,))


def set_progress(conn: psycopg.Connection, *, backtest_id: int, progress: float) -> None:
    """Progress as a fraction 0..1."""
    _update(conn, backtest_id, "progress = %s", (min(1.0, max(0.0, float(progress))),))


def mark_failed(conn: psycopg.Connection, *, backtest_id: int, error: str) -> None:
    """Status failed with ``error``; no result is kept."""
    _update(
        conn,
        backtest_id,
        "status = 'failed', error = %s, result = NULL, finished_at = now()",
        (error[:4000],),
    )


def mark_done(conn: psycopg.Connection, *, backtest_id: int, result: dict[str, Any]) -> None:
    """Status done with its result JSON."""
    from psycopg.types.json import Jsonb

    _update(
        conn,
        backtest_id,
        "status = 'done', progress = 1, error = NULL, result = %s, finished_at = now()",
        (Jsonb(result),),
    )


def store_forecasts(
    conn: psycopg.Connection, *, fold_key: str, horizon: int, frame: pd.DataFrame
) -> int:
    """Upsert one fold's forecasts (the contract's frame); returns the rows written.

    One statement over column arrays (``unnest``), in batches: a long fold's
    tens of thousands of rows go in a few round trips.
    """
    if frame.empty:
        return 0
    sql = (
        "INSERT INTO backtest_forecasts (fold_key, symbol, issued_at, step, horizon,"
        " model_version, trained_through, mean, lo_80, hi_80, lo_95, hi_95)"
        " SELECT %s, * FROM unnest(%s::text[], %s::timestamptz[], %s::int[], %s::int[],"
        " %s::text[], %s::timestamptz[], %s::float8[], %s::float8[], %s::float8[],"
        " %s::float8[], %s::float8[])"
        " ON CONFLICT (fold_key, symbol, issued_at, step) DO UPDATE SET"
        " horizon = EXCLUDED.horizon, model_version = EXCLUDED.model_version,"
        " trained_through = EXCLUDED.trained_through, mean = EXCLUDED.mean,"
        " lo_80 = EXCLUDED.lo_80, hi_80 = EXCLUDED.hi_80, lo_95 = EXCLUDED.lo_95,"
        " hi_95 = EXCLUDED.hi_95, created_at = now()"
    )
    for lo in range(0, len(frame), _BATCH):
        part = frame.iloc[lo : lo + _BATCH]
        conn.execute(
            sql,
            (
                fold_key,
                part["symbol"].astype(str).tolist(),
                pd.to_datetime(part["issued_at"], utc=True).dt.to_pydatetime().tolist(),
                part["step"].astype("int64").tolist(),
                [horizon] * len(part),
                part["model_version"].astype(str).tolist(),
                pd.to_datetime(part["trained_through"], utc=True).dt.to_pydatetime().tolist(),
                *(part[k].astype("float64").tolist() for k in _LEVELS),
            ),
        )
    return len(frame)


def load_forecasts(
    conn: psycopg.Connection,
    *,
    fold_key: str,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """A fold's stored forecasts with ``start <= issued_at <= end``, as the contract's frame."""
    sql = (
        "SELECT symbol, issued_at, step, mean, lo_80, hi_80, lo_95, hi_95, model_version,"
        " trained_through FROM backtest_forecasts WHERE fold_key = %s AND symbol = %s"
    )
    params: list[object] = [fold_key, symbol]
    if start is not None:
        sql += " AND issued_at >= %s"
        params.append(start)
    if end is not None:
        sql += " AND issued_at <= %s"
        params.append(end)
    sql += " ORDER BY issued_at, step"
    cols = ["symbol", "issued_at", "step", *_LEVELS, "model_version", "trained_through"]
    df = pd.DataFrame(conn.execute(sql, params).fetchall(), columns=cols)
    for c in ("issued_at", "trained_through"):
        df[c] = pd.to_datetime(df[c], utc=True)
    df["step"] = df["step"].astype("int64")
    for c in _LEVELS:
        df[c] = df[c].astype("float64")
    return df


def stored_decisions(
    conn: psycopg.Connection,
    *,
    fold_key: str,
    symbol: str,
    start: datetime,
    end: datetime,
    horizon: int,
) -> int:
    """Decision bars in ``start..end`` whose ``horizon`` steps are all stored for this fold."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT issued_at FROM backtest_forecasts"
        " WHERE fold_key = %s AND symbol = %s AND issued_at BETWEEN %s AND %s"
        " GROUP BY issued_at HAVING count(*) = %s) t",
        (fold_key, symbol, start, end, horizon),
    ).fetchone()
    return int(row[0]) if row else 0


def strategy_kind(conn: psycopg.Connection, *, name: str) -> str:
    """The ``kind`` of a stored strategy (``'parameters'`` for parameter-only ones)."""
    row = conn.execute("SELECT kind FROM strategies WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"strategy {name!r} not found")
    return str(row[0])
