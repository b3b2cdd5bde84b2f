"""Training progress rows: forward-only, idempotent updates persisted in PostgreSQL.

Each (run, symbol) has a state ``queued → running → done | failed | skipped``,
an attempt number, a step of max steps, latest losses, times and an error.
An update applies only if its key ``(attempt, state rank, step)`` is greater
than the stored one, so a retried task that reports the same step twice, or
a late message from a superseded attempt, changes nothing. The progress
actor (``kitrade.training.actors``) is the single writer; this module holds
the rules and the SQL, without Ray.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from kitrade.errors import NotFoundError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "STATE_RANK",
    "ProgressUpdate",
    "RunProgress",
    "State",
    "SymbolProgress",
    "finish_run",
    "latest_run_id",
    "load_run",
    "persist_update",
    "start_run",
]

State = Literal["queued", "running", "done", "failed", "skipped"]
STATE_RANK: dict[str, int] = {"queued": 0, "running": 1, "done": 2, "failed": 2, "skipped": 2}
TERMINAL = {"done", "failed", "skipped"}


class ProgressUpdate(BaseModel):
    """One report from a task or the driver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    symbol: str
    state: State
    attempt: int = Field(1, ge=0)
    step: int = Field(0, ge=0)
    max_steps: int = Field(0, ge=0)
    train_loss: float | None = None
    val_loss: float | None = None
    error: str | None = None
    detail: str | None = None
    version: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def key(self) -> tuple[int, int, int]:
        """Order of updates: later attempt, then later state, then later step."""
        return (self.attempt, STATE_RANK[self.state], self.step)


class SymbolProgress(BaseModel):
    """Where one symbol of a run stands."""

    symbol: str
    state: State
    attempt: int
    step: int
    max_steps: int
    train_loss: float | None
    val_loss: float | None
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    detail: str | None
    version: str | None
    updated_at: datetime
    eta_s: float | None = None
    percent: float = 0.0


class RunProgress(BaseModel):
    """A run and its symbols."""

    run_id: str | None
    kind: str | None = None
    trigger: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    symbols: list[SymbolProgress] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    percent: float = 0.0
    eta_s: float | None = None


_UPSERT = """
INSERT INTO training_progress AS tp (run_id, symbol, state, attempt, step, max_steps, train_loss,
    val_loss, started_at, ended_at, error, detail, version, updated_at)
VALUES (%(run_id)s, %(symbol)s, %(state)s, %(attempt)s, %(step)s, %(max_steps)s, %(train_loss)s,
    %(val_loss)s, %(started_at)s, %(ended_at)s, %(error)s, %(detail)s, %(version)s, %(at)s)
ON CONFLICT (run_id, symbol) DO UPDATE SET
    state = EXCLUDED.state,
    attempt = EXCLUDED.attempt,
    step = GREATEST(EXCLUDED.step, CASE WHEN EXCLUDED.attempt = tp.attempt
                                        THEN tp.step ELSE 0 END),
    max_steps = GREATEST(EXCLUDED.max_steps, CASE WHEN EXCLUDED.attempt = tp.attempt
                                                  THEN tp.max_steps ELSE 0 END),
    train_loss = coalesce(EXCLUDED.train_loss, tp.train_loss),
    val_loss = coalesce(EXCLUDED.val_loss, tp.val_loss),
    started_at = CASE WHEN EXCLUDED.attempt > tp.attempt OR tp.started_at IS NULL
                      THEN EXCLUDED.started_at ELSE tp.started_at END,
    ended_at = EXCLUDED.ended_at,
    error = EXCLUDED.error,
    detail = coalesce(EXCLUDED.detail, tp.detail),
    version = coalesce(EXCLUDED.version, tp.version),
    updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.attempt,
       CASE EXCLUDED.state WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END,
       EXCLUDED.step)
    > (tp.attempt, CASE tp.state WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, tp.step)
RETURNING 1
"""


def persist_update(conn: psycopg.Connection, update: ProgressUpdate) -> bool:
    """Apply ``update`` if it moves the symbol forward; True if it did."""
    params: dict[str, Any] = update.model_dump()
    params["started_at"] = update.at if update.state != "queued" else None
    params["ended_at"] = update.at if update.state in TERMINAL else None
    return conn.execute(_UPSERT, params).fetchone() is not None


def settle(
    conn: psycopg.Connection, *, run_id: str, symbol: str, version: str | None, detail: str
) -> bool:
    """Write the gate's verdict on a symbol that is already done; True if it was done.

    A ``both``-scope run gates a symbol's two candidates after both tasks
    reported done: the verdict (and the version kept) replaces the done row's
    detail. Updates must move forward (``persist_update``); this one is not an
    update of the training but its conclusion, so it has its own statement.
    """
    row = conn.execute(
        "UPDATE training_progress SET detail = %s, version = coalesce(%s, version),"
        " updated_at = now() WHERE run_id = %s AND symbol = %s AND state = 'done' RETURNING 1",
        (detail, version, run_id, symbol),
    ).fetchone()
    return row is not None


def start_run(
    conn: psycopg.Connection,
    *,
    run_id: str,
    kind: str = "train_all",
    trigger: str = "manual",
    params: dict[str, Any] | None = None,
) -> None:
    """Record a run (idempotent)."""
    conn.execute(
        "INSERT INTO training_runs (run_id, kind, trigger, params) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (run_id) DO NOTHING",
        (run_id, kind, trigger, Jsonb(params or {})),
    )


def finish_run(conn: psycopg.Connection, *, run_id: str, status: str) -> None:
    """Mark a run finished with ``status`` (``done``, ``failed``, ``partial``)."""
    conn.execute(
        "UPDATE training_runs SET status = %s, finished_at = now() WHERE run_id = %s",
        (status, run_id),
    )


def latest_run_id(conn: psycopg.Connection) -> str | None:
    """The most recently started run."""
    row = conn.execute(
        "SELECT run_id FROM training_runs ORDER BY started_at DESC, run_id DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


_SYM_COLS = (
    "symbol, state, attempt, step, max_steps, train_loss, val_loss, started_at, ended_at,"
    " error, detail, version, updated_at"
)


def load_run(
    conn: psycopg.Connection, *, run_id: str | None = None, now: datetime | None = None
) -> RunProgress:
    """A run's progress (the latest run by default) with percentages and time left."""
    run_id = run_id or latest_run_id(conn)
    if run_id is None:
        return RunProgress(run_id=None)
    run = conn.execute(
        "SELECT kind, trigger, status, started_at, finished_at FROM training_runs WHERE run_id = %s",
        (run_id,),
    ).fetchone()
    if run is None:
        raise NotFoundError(f"training run {run_id} not found")
    rows = conn.execute(
        f"SELECT {_SYM_COLS} FROM training_progress WHERE run_id = %s ORDER BY symbol", (run_id,)
    ).fetchall()
    names = [c.strip() for c in _SYM_COLS.split(",")]
    now = now or datetime.now(UTC)
    symbols = [_with_eta(SymbolProgress(**dict(zip(names, r, strict=True))), now) for r in rows]
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s.state] = counts.get(s.state, 0) + 1
    percent = sum(s.percent for s in symbols) / len(symbols) if symbols else 0.0
    etas = [s.eta_s for s in symbols if s.eta_s is not None]
    return RunProgress(
        run_id=run_id,
        kind=run[0],
        trigger=run[1],
        status=run[2],
        started_at=run[3],
        finished_at=run[4],
        symbols=symbols,
        counts=counts,
        percent=round(percent, 1),
        eta_s=max(etas) if etas else None,
    )


def _with_eta(p: SymbolProgress, now: datetime) -> SymbolProgress:
    if p.state in TERMINAL:
        return p.model_copy(update={"percent": 100.0, "eta_s": 0.0})
    if p.state == "queued" or p.max_steps <= 0:
        return p
    pct = min(100.0, 100.0 * p.step / p.max_steps)
    eta = None
    if p.started_at is not None and p.step > 0:
        elapsed = (now - p.started_at).total_seconds()
        # Early stopping may end sooner: this is an upper bound.
        eta = max(0.0, elapsed / p.step * (p.max_steps - p.step))
    return p.model_copy(update={"percent": round(pct, 1), "eta_s": eta})
