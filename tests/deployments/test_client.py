"""The Python client against a running gateway: every route, typed answers, errors as ApiError.

A real Serve app on a local Ray cluster over HTTP on 127.0.0.1, real PostgreSQL, real
chromadb and the offline analyst (no LLM server configured).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from kitrade.client import ApiError, Client, _sse_events
from kitrade.data.sources.sample import SampleSource
from kitrade.data.sync import sync_symbols
from kitrade.schemas import (
    AnalysisAnswerOut,
    BarOut,
    Forecast,
    Health,
    KnowledgeDoc,
    KnowledgeUrl,
    ModelVersionOut,
    RunProgress,
    ScoreSummaryOut,
    StrategySpec,
    StrategyUpdate,
    SymbolIn,
    SymbolUpdate,
    SyncReport,
    TrainingStarted,
)
from tests.conftest import app_env, deploy_kitrade, free_port

KEY = "client-key-0123456789"
TINY = {"max_steps": 20, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}

#: every gateway route and the client method that calls it
ROUTES = {
    ("GET", "/health"): "health",
    ("GET", "/api/v1/forecast/{symbol}"): "forecast",
    ("POST", "/api/v1/forecast/train-all"): "train_all",
    ("GET", "/api/v1/forecast/training/progress"): "training_progress",
    ("GET", "/api/v1/models"): "models",
    ("GET", "/api/v1/models/{symbol}/evaluation"): "model_evaluation",
    ("POST", "/api/v1/models/{symbol}/promote"): "promote",
    ("POST", "/api/v1/models/{symbol}/rollback"): "rollback",
    ("GET", "/api/v1/symbols"): "symbols",
    ("POST", "/api/v1/symbols"): "create_symbol",
    ("GET", "/api/v1/symbols/{symbol}"): "symbol",
    ("PATCH", "/api/v1/symbols/{symbol}"): "update_symbol",
    ("DELETE", "/api/v1/symbols/{symbol}"): "delete_symbol",
    ("GET", "/api/v1/symbols/{symbol}/bars"): "bars",
    ("GET", "/api/v1/strategies"): "strategies",
    ("POST", "/api/v1/strategies"): "create_strategy",
    ("GET", "/api/v1/strategies/{name}"): "strategy",
    ("PATCH", "/api/v1/strategies/{name}"): "update_strategy",
    ("DELETE", "/api/v1/strategies/{name}"): "delete_strategy",
    ("POST", "/api/v1/analyze"): "analyze",
    ("POST", "/api/v1/analyze/stream"): "analyze_stream",
    ("GET", "/api/v1/analyze/score"): "score",
    ("POST", "/api/v1/analyze/score"): "run_scoring",
    ("GET", "/api/v1/analyze/history"): "analysis_history",
    ("POST", "/api/v1/knowledge"): "add_document",
    ("POST", "/api/v1/knowledge/url"): "add_document_url",
    ("GET", "/api/v1/knowledge"): "documents",
    ("GET", "/api/v1/knowledge/search"): "search_knowledge",
    ("DELETE", "/api/v1/knowledge/{doc_id}"): "delete_document",
    ("POST", "/api/v1/sync"): "sync",
    ("GET", "/api/v1/sync/status"): "sync_status",
}


def test_every_gateway_route_has_a_client_method():
    from kitrade.deployments.gateway.routes import ROUTERS

    served = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        for method in getattr(route, "methods", ())
        # backtest routes and their client methods come with the backtest resource
        if not route.path.startswith("/api/v1/backtest")
    }
    assert served == set(ROUTES), served ^ set(ROUTES)
    for name in ROUTES.values():
        assert callable(getattr(Client, name)), name


def test_server_sent_events_are_decoded_field_by_field():
    lines = iter(
        [
            "event: context",
            'data: {"backend": "offline"}',
            "",
            "event: token",
            'data: "Bu"',
            "",
            ": a comment line is ignored",
            "event: answer",
            'data: {"recommendation":',
            'data: "hold"}',
        ]
    )
    events = list(_sse_events(lines))
    assert [e["event"] for e in events] == ["context", "token", "answer"]
    assert events[0]["data"] == {"backend": "offline"} and events[1]["data"] == "Bu"
    assert events[2]["data"] == {"recommendation": "hold"}  # data lines joined, then decoded


@pytest.fixture(scope="module")
def gateway(module_settings, db):
    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.training.tasks import new_run_id, train_symbol

    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
    sync_symbols(db, SampleSource())
    train_symbol(module_settings, "EURUSD", run_id=new_run_id(), overrides=TINY)
    port = free_port()
    connect(num_cpus=4)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    env = app_env(module_settings, KEY, KITRADE_LLM_BASE_URL="")
    base = deploy_kitrade(env, port)
    with Client(base, api_key=KEY, timeout_s=120) as kt:
        yield kt
    serve.shutdown()
    ray.shutdown()


@pytest.mark.slow
def test_health_forecast_models_and_training(gateway):
    kt = gateway
    health = kt.health()
    assert isinstance(health, Health) and health.status == "ok"
    assert {"database", "forecast"} <= set(health.components)
    fc = kt.forecast("EURUSD", horizon=3)
    assert isinstance(fc, Forecast) and len(fc.points) == 3
    assert fc.verdict in ("beats naive", "no better than naive") and fc.n_origins
    versions = kt.models("EURUSD")
    assert versions and all(isinstance(v, ModelVersionOut) for v in versions)
    active = next(v for v in versions if v.status == "active")
    assert active.metrics["n_origins"] == fc.n_origins and "rmae" in active.metrics["model"]
    assert kt.promote("EURUSD", active.version).version == active.version
    with pytest.raises(ApiError) as info:
        kt.rollback("EURUSD")  # only one version: nothing earlier to go back to
    assert info.value.status == 409 and "roll back" in info.value.message
    started = kt.train_all(symbols=["GOOG"], force=True)
    assert isinstance(started, TrainingStarted) and started.run_id
    deadline = time.monotonic() + 60
    while True:  # the background run records itself a moment after the 202
        try:
            progress = kt.training_progress(started.run_id)
            break
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert isinstance(progress, RunProgress) and progress.run_id == started.run_id
    with pytest.raises(ApiError) as missing:
        kt.training_progress("no-such-run")
    assert missing.value.status == 404


@pytest.mark.slow
def test_symbols_bars_strategies_and_sync(gateway):
    kt = gateway
    assert {s.symbol for s in kt.symbols()} >= {"EURUSD", "GOOG", "BTCUSD"}
    made = kt.create_symbol(SymbolIn(symbol="XAUUSD", timeframe="H4"))
    assert made.symbol == "XAUUSD" and kt.symbol("XAUUSD").timeframe == "H4"
    changed = kt.update_symbol("XAUUSD", SymbolUpdate(description="gold", active=False))
    assert changed.description == "gold" and changed.active is False
    assert "XAUUSD" not in {s.symbol for s in kt.symbols(active_only=True)}
    assert kt.delete_symbol("XAUUSD").bars_deleted == 0
    with pytest.raises(ApiError) as gone:
        kt.symbol("XAUUSD")
    assert gone.value.status == 404
    bars = kt.bars("GOOG", last=3)
    assert len(bars) == 3 and all(isinstance(b, BarOut) for b in bars)
    start = datetime(2010, 1, 4, tzinfo=UTC)
    ranged = kt.bars("GOOG", start=start, end=datetime(2010, 1, 8, tzinfo=UTC))
    assert 1 <= len(ranged) <= 5
    spec = StrategySpec(name="cl-trend", symbols=["GOOG"], timeframe="D1", parameters={})
    assert kt.create_strategy(spec).name == "cl-trend"
    updated = kt.update_strategy("cl-trend", StrategyUpdate(description="client test"))
    assert updated.description == "client test" == kt.strategy("cl-trend").description
    assert [s.name for s in kt.strategies("GOOG")] == ["cl-trend"]
    assert kt.delete_strategy("cl-trend").deleted == "cl-trend"
    report = kt.sync(["GOOG"], source="sample")
    assert isinstance(report, SyncReport)
    assert "GOOG" in {s.symbol for s in kt.sync_status()}
    with pytest.raises(ApiError) as bad:
        kt.create_symbol(SymbolIn(symbol="GOOG"))
    assert bad.value.status == 409 and "already exists" in bad.value.message


@pytest.mark.slow
def test_analysis_stream_score_and_history(gateway):
    kt = gateway
    answer = kt.analyze("EURUSD", "Should I buy or sell EURUSD?")
    assert isinstance(answer, AnalysisAnswerOut) and answer.backend == "offline"
    assert answer.recommendation in ("buy", "sell", "hold")
    events = list(kt.analyze_stream("EURUSD", "Buy or sell?"))
    assert [e["event"] for e in events] == ["context", "answer"]
    assert events[1]["data"]["recommendation"] in ("buy", "sell", "hold")
    with pytest.raises(ApiError) as missing:
        list(kt.analyze_stream("NOPE", "x"))
    assert missing.value.status == 404 and "NOPE" in missing.value.message
    past = kt.analyze("EURUSD", "Buy?", as_of=datetime(2017, 10, 2, 12, tzinfo=UTC))
    assert past.model_extra and past.model_extra["forecast_version"] is None
    summary = kt.run_scoring("EURUSD")
    assert isinstance(summary, ScoreSummaryOut) and summary.newly_scored >= 1
    assert kt.score("EURUSD").newly_scored == 0
    history = kt.analysis_history("EURUSD", limit=10)
    assert {h["id"] for h in history} >= {events[1]["data"]["id"]}
    assert any(h.get("outcome") for h in history)


@pytest.mark.slow
def test_knowledge_documents(gateway):
    kt = gateway
    doc = KnowledgeDoc(
        text="EURUSD okapi carry note: the client adds, finds and deletes this.",
        source="client.md",
        symbols=["EURUSD"],
        date="2020-05-01",
    )
    added = kt.add_document(doc)
    assert added.doc_id in {d.doc_id for d in kt.documents()}
    found = kt.search_knowledge("okapi carry", k=3, symbol="EURUSD")
    assert found and found[0].id.startswith(added.doc_id)
    early = kt.search_knowledge("okapi carry", k=3, as_of=date(2019, 1, 1))
    assert not any(p.id.startswith(added.doc_id) for p in early)
    assert kt.delete_document(added.doc_id).doc_id == added.doc_id
    with pytest.raises(ApiError) as gone:
        kt.delete_document(added.doc_id)
    assert gone.value.status == 404
    with pytest.raises(ApiError) as refused:
        kt.add_document_url(KnowledgeUrl(url="http://127.0.0.1:9/x.md"))
    assert refused.value.status == 422
