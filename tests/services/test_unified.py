"""The CLI and the deployments run the same use cases: a real Ray cluster, real chromadb,
real PostgreSQL, the upstream API stand-in on 127.0.0.1, and ``kitrade`` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest

from kitrade.data.events import BARS_INGESTED, list_events
from tests.conftest import app_env
from tests.services.conftest import TRUTH, outcome, reset, serve_more, store_answer

pytestmark = pytest.mark.slow
KEY = "services-key-0123456789"


@pytest.fixture(scope="module")
def cluster(module_settings) -> Iterator[tuple[str, object]]:
    """A local Ray cluster with the knowledge actor (no starter documents); its address."""
    import ray

    from kitrade.analysis.actors import get_knowledge_actor
    from kitrade.cluster import connect

    connect(num_cpus=2)
    kb = get_knowledge_actor(module_settings, seed=False)
    ray.get(kb.count.remote(), timeout=300)  # the embedder is loaded before the first test
    yield ray.get_runtime_context().gcs_address, kb
    ray.shutdown()


@pytest.fixture
def replica_env(module_settings, upstream, monkeypatch) -> dict[str, str]:
    """The environment a replica (here: this process) and ``kitrade`` read their settings from."""
    env = app_env(module_settings, KEY, KITRADE_LLM_BASE_URL="", EASYINSIGHT_API_URL=upstream.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def kitrade(env: dict[str, str], ray_address: str, *args: str) -> subprocess.CompletedProcess:
    """``kitrade ARGS`` as a user runs it, joined to the test's cluster."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KITRADE_", "TIMESCALE_", "EASYINSIGHT_", "RAY_ADDRESS"))
    }
    full = clean | env | {"RAY_ADDRESS": ray_address, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kitrade.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _note_ids(kb: object) -> set[str]:
    import ray

    return {d["doc_id"] for d in ray.get(kb.list_documents.remote())}  # type: ignore[attr-defined]


def _note_of_bar(n: int) -> str:
    return f"notes-EURUSD-{TRUTH['ts'].iloc[n - 1]:%Y-%m-%d}"


def test_cli_sync_and_deployment_sync_run_the_same_follow_ups(db, cluster, upstream, replica_env):
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.data import DataDeployment

    address, kb = cluster
    reset(db)
    first = kitrade(replica_env, address, "sync", "--source", "http")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "follow-ups: answers scored 0, market notes 1" in first.stdout
    assert _note_of_bar(200) in _note_ids(kb)
    by_replica = store_answer(db, bar=190, horizon=20)  # due once bar 210 is stored
    by_cli = store_answer(db, bar=240, horizon=30, rec="sell")  # due once bar 270 is stored

    serve_more(upstream, 250)
    dep = DataDeployment(AppArgs())
    try:
        answer = asyncio.run(dep.sync(None, "http"))
    finally:
        dep._db.close()
    assert answer["ok"]["results"][0]["new_bars"] == 50
    assert outcome(db, by_replica) is not None and outcome(db, by_cli) is None
    assert _note_of_bar(250) in _note_ids(kb)

    serve_more(upstream, 300)
    again = kitrade(replica_env, address, "sync", "--source", "http")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "follow-ups: answers scored 1, market notes 1" in again.stdout
    assert outcome(db, by_cli)["exit_close"] == pytest.approx(TRUTH["close"].iloc[270])
    assert _note_of_bar(300) in _note_ids(kb)
    with db.connection() as conn:
        counts = [e.payload["count"] for e in list_events(conn, kind=BARS_INGESTED)]
    assert sorted(counts) == [50, 50, 200]


class _NoForecasts:
    """The forecast deployment's handle when no model is served: every call is a 404."""

    class _Method:
        def remote(self, symbol: str, horizon: int | None) -> _NoForecasts._Method:
            self.symbol = symbol
            return self

        def result(self, timeout_s: float) -> dict:
            return {"error": {"class": "NotFoundError", "message": f"no model for {self.symbol}"}}

    forecast = _Method()


def test_cli_and_deployment_get_the_same_analyst(db, cluster, upstream, replica_env):
    import ray

    from kitrade.deployments.analysis import AnalysisDeployment
    from kitrade.deployments.common import AppArgs

    address, kb = cluster
    added = ray.get(
        kb.add_document.remote(
            "# EURUSD outlook\n\nEURUSD support holds; momentum is turning up.",
            "desk-note",
            None,
            ["EURUSD"],
            "2024-01-05",
        )
    )
    as_of = TRUTH["ts"].iloc[180].isoformat()
    question = "Should I buy EURUSD now?"
    cli = kitrade(replica_env, address, "analyze", "EURUSD", question, "--as-of", as_of)
    assert cli.returncode == 0, cli.stderr[-2000:]
    dep = AnalysisDeployment(_NoForecasts(), AppArgs())
    try:
        got = asyncio.run(dep.analyze("EURUSD", question, datetime.fromisoformat(as_of)))["ok"]
        hist = asyncio.run(dep.history("EURUSD", 2))["ok"]
    finally:
        dep._db.close()
    assert got["backend"] == "offline" and got["recommendation"].upper() in cli.stdout
    replica, from_cli = hist  # newest first: the replica answered last
    assert replica["id"] == got["id"]
    for field in ("recommendation", "confidence", "passage_ids", "last_bar", "backend"):
        assert replica[field] == from_cli[field], field
    assert any(p.startswith(added["doc_id"]) for p in replica["passage_ids"])
