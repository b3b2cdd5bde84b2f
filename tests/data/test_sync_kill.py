"""A sync killed mid-way (SIGKILL) loses and duplicates nothing; the next one completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pandas as pd

from kitrade.data.events import BARS_INGESTED, list_events
from kitrade.data.store import open_store
from tests.conftest import make_settings
from tests.fakes.upstream import FakeUpstream, synthetic_bars


def test_sync_killed_mid_way_then_resumed(pg_server, tmp_path, record):
    dbname = "kill_" + uuid.uuid4().hex[:8]
    settings = make_settings(tmp_path, pg_server, dbname)
    db = open_store(settings, start=False)
    truth = synthetic_bars(3000)
    with FakeUpstream({"EURUSD": truth}, page_size=200) as up:
        up.delay_s = 0.15  # 15 pages: about 2 s for the whole sync
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KITRADE_", "TIMESCALE_"))}
        env.update(
            TIMESCALE_HOST="127.0.0.1",
            TIMESCALE_PORT=str(pg_server.port),
            TIMESCALE_DB=dbname,
            KITRADE_DATA_DIR=str(tmp_path),
            EASYINSIGHT_API_URL=up.url,
            KITRADE_UPSTREAM_PAGE_SIZE="200",
        )
        cmd = [sys.executable, "-m", "kitrade.cli", "sync"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:
            with db.connection() as conn:
                stored = conn.execute("SELECT count(*) FROM bars").fetchone()[0]
            if stored >= 600:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with db.connection() as conn:
            at_kill = conn.execute("SELECT count(*) FROM bars").fetchone()[0]
        assert 0 < at_kill < len(truth), f"kill came too late or too early: {at_kill}"

        t_resume = time.monotonic()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        resumed_s = time.monotonic() - t_resume
        assert done.returncode == 0, done.stderr
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT ts, close FROM bars WHERE symbol='EURUSD' ORDER BY ts"
        ).fetchall()
        dups = conn.execute("SELECT count(*) - count(DISTINCT (symbol, ts)) FROM bars").fetchone()[
            0
        ]
        events = list_events(conn, kind=BARS_INGESTED, symbol="EURUSD")
        state = conn.execute(
            "SELECT status, last_bar FROM sync_state WHERE symbol='EURUSD'"
        ).fetchone()
    db.close()
    got = pd.DataFrame(rows, columns=["ts", "close"])
    assert len(got) == len(truth) and dups == 0
    assert (pd.to_datetime(got["ts"], utc=True).to_numpy() == truth["ts"].to_numpy()).all()
    assert (got["close"].to_numpy() == truth["close"].to_numpy()).all()
    # the bars the killed run committed are announced by the next run's event
    assert sum(e.payload["count"] for e in events) == len(truth)
    assert state[0] == "ok" and state[1] == truth["ts"].iloc[-1]
    record(
        "sync killed mid-way (SIGKILL), then resumed", True, len(truth) - len(got) + dups, resumed_s
    )
