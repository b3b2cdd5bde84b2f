"""Progress rules: forward-only, idempotent, persisted, with time left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kitrade.data.progress import (
    ProgressUpdate,
    finish_run,
    latest_run_id,
    load_run,
    persist_update,
    start_run,
)


@pytest.fixture
def prog(clean_db):
    with clean_db.connection() as conn:
        conn.execute("TRUNCATE training_runs CASCADE")
        start_run(conn, run_id="r1")
    return clean_db


def upd(**kw) -> ProgressUpdate:
    return ProgressUpdate(run_id="r1", symbol="EURUSD", **kw)


def test_updates_move_forward_only_and_repeat_is_a_no_op(prog):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    with prog.connection() as conn:
        assert persist_update(conn, upd(state="queued", at=t0))
        assert persist_update(
            conn,
            upd(
                state="running",
                step=10,
                max_steps=100,
                train_loss=0.5,
                at=t0 + timedelta(seconds=10),
            ),
        )
        assert not persist_update(
            conn, upd(state="running", step=10, max_steps=100, train_loss=9.9)
        )
        assert not persist_update(conn, upd(state="running", step=5, max_steps=100))
        assert not persist_update(conn, upd(state="queued"))
        p = load_run(conn, now=t0 + timedelta(seconds=20)).symbols[0]
        assert (p.state, p.step, p.train_loss) == ("running", 10, 0.5)
        assert p.percent == 10.0
        assert p.eta_s == pytest.approx(10 / 10 * 90)  # 10 s for 10 steps → 90 s for 90 more


def test_retry_attempt_supersedes_failure_and_late_messages_are_ignored(prog):
    with prog.connection() as conn:
        persist_update(conn, upd(state="running", step=50, max_steps=100))
        persist_update(conn, upd(state="failed", step=50, error="worker died"))
        assert persist_update(conn, upd(state="running", attempt=2, step=1, max_steps=100))
        assert not persist_update(conn, upd(state="running", attempt=1, step=99))  # stale attempt
        assert persist_update(conn, upd(state="done", attempt=2, step=100, version="v"))
        assert not persist_update(conn, upd(state="failed", attempt=2, step=100))
        p = load_run(conn).symbols[0]
    assert (p.state, p.attempt, p.version, p.percent, p.error) == ("done", 2, "v", 100.0, None)


def test_run_summary_counts_and_latest_run(prog):
    with prog.connection() as conn:
        for sym, state in (("A", "done"), ("B", "skipped"), ("C", "running"), ("D", "queued")):
            persist_update(
                conn, ProgressUpdate(run_id="r1", symbol=sym, state=state, step=0, max_steps=10)
            )
        start_run(conn, run_id="r2", trigger="age")
        assert latest_run_id(conn) == "r2"
        finish_run(conn, run_id="r1", status="partial")
        run = load_run(conn, run_id="r1")
    assert run.counts == {"done": 1, "skipped": 1, "running": 1, "queued": 1}
    assert run.status == "partial" and run.percent == 50.0
