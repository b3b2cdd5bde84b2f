"""Backtests over HTTP on a real stack (PostgreSQL, a local Ray cluster, the Serve app):
202 then done with metrics beside buy-and-hold, bad input refused before anything runs,
strategy kinds in the catalog, write access required; plus the document's contract
(checked on the app factory without Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kitrade.client import ApiError, Client
from kitrade.config import Settings
from kitrade.deployments.gateway import create_app
from kitrade.deployments.gateway.auth import AuthConfig
from kitrade.schemas import BacktestRequest, StrategySpec
from tests.conftest import app_env, deploy_kitrade, free_port
from tests.services.test_backtests import synthetic

KEY = "backtests-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: tiny fold models: a backtest of two symbols and two folds finishes in seconds
TINY = {
    "max_steps": 5,
    "mlp_units": 16,
    "input_size": 24,
    "horizon": 6,
    "val_check_steps": 4,
    "windows_batch_size": 32,
    "batch_size": 8,
}
#: the 201st of 260 hourly bars: 60 decision bars per symbol
START = "2024-01-09T08:00:00Z"
SPEC = {"kind": "forecast_threshold", "params": {"enter": 0.0005, "allow_short": True}}


@pytest.fixture(scope="module")
def app(module_settings: Any, db: Any) -> Iterator[str]:
    """The Serve app over two symbols of 260 synthetic hourly bars."""
    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.data.bars import ingest_bars
    from kitrade.data.symbols import create_symbol
    from kitrade.schemas import SymbolIn

    with db.connection() as conn:
        for i, name in enumerate(("BTA", "BTB")):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=synthetic(260, i))
    connect(num_cpus=4)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = deploy_kitrade(app_env(module_settings, KEY, NHITS_USE_GPU="0"), port, timeout_s=120)
    yield base
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def kt(app: str) -> Iterator[Client]:
    with Client(app, api_key=KEY, timeout_s=60) as c:
        yield c


def _count(app: str) -> int:
    return len(httpx.get(f"{app}/api/v1/backtests", params={"limit": 1000}, timeout=30).json())


pytestmark = pytest.mark.slow


def test_a_backtest_is_accepted_then_runs_to_done_beside_buy_and_hold(app, kt):
    started = kt.create_backtest(
        BacktestRequest(
            spec=SPEC,
            symbols=["BTA", "BTB"],
            timeframe="H1",
            start=START,
            folds=2,
            costs={"commission": 0.0001},
            model=TINY,
        )
    )
    assert started.status == "queued"
    assert started.links["self"] == f"/api/v1/backtests/{started.id}"
    done = kt.wait_backtest(started.id, timeout=300)
    assert done.status == "done", done.error
    assert done.progress == 1.0 and done.error is None
    metrics = done.metrics or {}
    assert set(metrics) == {"strategy", "buy_and_hold", "naive"}
    for name in metrics:
        assert metrics[name]["n_bars"] == 60, name
    assert done.equity and done.benchmark_equity and done.drawdown
    for curve, name in ((done.equity, "strategy"), (done.benchmark_equity, "buy_and_hold")):
        growth = curve[-1][1] / curve[0][1] - 1
        assert growth == pytest.approx(metrics[name]["total_return"]), name
    assert done.equity[0][0].startswith("2024-01-09T08:00")
    assert all(c["passed"] for c in done.lookahead_checks or [])
    assert [(f["symbol"], f["index"]) for f in done.folds or []] == [
        ("BTA", 1),
        ("BTA", 2),
        ("BTB", 1),
        ("BTB", 2),
    ]
    assert done.costs["commission"] == 0.0001
    assert done.model_overrides == TINY
    listed = kt.backtests()
    assert listed[0].id == started.id  # newest first
    assert "equity" not in listed[0].model_dump()  # the list leaves the curves out
    assert listed[0].metrics == metrics
    assert [b.id for b in kt.backtests(status="done")] == [started.id]


def test_a_stored_strategy_of_a_kind_is_backtested_by_name(app, kt):
    spec = {"name": "thr", "symbols": ["BTA"], "kind": "sma_cross", "parameters": {"fast": 3}}
    r = httpx.post(f"{app}/api/v1/strategies", json=spec, headers=AUTH, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "sma_cross"
    assert httpx.get(f"{app}/api/v1/strategies/thr", timeout=30).json()["kind"] == "sma_cross"
    assert {s.name: s.kind for s in kt.strategies()}["thr"] == "sma_cross"
    bt = kt.create_backtest(BacktestRequest(strategy="thr", start=START, folds=1, model=TINY))
    done = kt.wait_backtest(bt.id, timeout=300)
    assert done.status == "done", done.error
    assert done.spec == {"kind": "sma_cross", "params": {"fast": 3}}
    assert done.symbols == ["BTA"] and done.strategy_name == "thr"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**SPEC, "params": {"edge": 1}}, 422, "edge"),
        ({"kind": "forecast_threshold", "params": {"enter": 0.001, "exit": 0.01}}, 422, "exit"),
    ],
)
def test_strategy_parameters_are_checked_against_the_kind(app, body, status, message):
    spec = {"name": "bad", "symbols": ["BTA"], "kind": body["kind"], "parameters": body["params"]}
    r = httpx.post(f"{app}/api/v1/strategies", json=spec, headers=AUTH, timeout=30)
    assert r.status_code == status and message in r.json()["message"], r.text
    r = httpx.post(
        f"{app}/api/v1/strategies", json={**spec, "kind": "moon_phase"}, headers=AUTH, timeout=30
    )
    assert r.status_code == 422 and "kind" in r.json()["message"], r.text
    assert httpx.get(f"{app}/api/v1/strategies/bad", timeout=30).status_code == 404


def test_an_update_keeps_parameters_fitting_the_kind(app):
    spec = {"name": "upd", "symbols": ["BTA"], "parameters": {"lookback": 20}}
    r = httpx.post(f"{app}/api/v1/strategies", json=spec, headers=AUTH, timeout=30)
    assert r.status_code == 201 and r.json()["kind"] == "parameters"  # old clients' default
    r = httpx.patch(
        f"{app}/api/v1/strategies/upd", json={"kind": "buy_and_hold"}, headers=AUTH, timeout=30
    )
    assert r.status_code == 422 and "lookback" in r.json()["message"], r.text
    r = httpx.patch(
        f"{app}/api/v1/strategies/upd",
        json={"kind": "buy_and_hold", "parameters": {"weight": 0.5}},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["parameters"]) == ("buy_and_hold", {"weight": 0.5})


BASE = {"spec": SPEC, "symbols": ["BTA"], "timeframe": "H1", "model": TINY}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**BASE, "costs": {"commission": -0.001}}, 422, "commission"),
        ({**BASE, "costs": {"spread": {"BTA": -1}}}, 422, "spread"),
        ({**BASE, "costs": {"slippage": {"GOOG": 0.001}}}, 422, "slippage: GOOG"),
        ({**BASE, "costs": {"init_cash": 0}}, 422, "init_cash"),
        ({**BASE, "start": "2024-01-10", "end": "2024-01-09"}, 422, "start <= end"),
        ({**BASE, "start": "2030-01-01"}, 422, "outside the stored bars"),
        ({**BASE, "end": "2020-01-01"}, 422, "outside the stored bars"),
        ({**BASE, "start": "2024-01-01T10:00:00Z"}, 422, "expected at least 36"),
        ({**BASE, "start": "2024-01-11T17:00:00Z", "folds": 5}, 422, "expected at least 5"),
        ({**BASE, "strategy": "thr"}, 422, "not both"),
        ({"spec": SPEC, "symbols": ["BTA"]}, 422, "timeframe"),
        ({**BASE, "spec": {"kind": "parameters"}}, 422, "kind"),
        ({**BASE, "spec": {**SPEC, "params": {"edge": 1}}}, 422, "edge"),
        ({**BASE, "model": {"max_steps": 0}}, 422, "max_steps"),
        ({**BASE, "model": {"warp": 9}}, 422, "warp"),
        ({**BASE, "folds": 0}, 422, "folds"),
        ({**BASE, "start": 1700000000}, 422, "ISO 8601"),
        ({**BASE, "symbols": ["NOPE"]}, 404, "NOPE"),
        ({"strategy": "no-such-strategy"}, 404, "no-such-strategy"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(app, body, status, message):
    before = _count(app)
    r = httpx.post(f"{app}/api/v1/backtests", json=body, headers=AUTH, timeout=60)
    assert r.status_code == status, r.text
    assert message in r.json()["message"], r.text
    assert _count(app) == before


def test_a_parameter_only_strategy_is_refused_with_the_kinds_to_choose_from(app):
    spec = {"name": "legacy", "symbols": ["BTA"], "parameters": {"lookback": 20}}
    assert httpx.post(f"{app}/api/v1/strategies", json=spec, headers=AUTH, timeout=30).is_success
    before = _count(app)
    r = httpx.post(f"{app}/api/v1/backtests", json={"strategy": "legacy"}, headers=AUTH, timeout=60)
    assert r.status_code == 422, r.text
    assert "parameter-only" in r.json()["message"] and "forecast_threshold" in r.json()["message"]
    assert _count(app) == before


def test_an_unknown_backtest_is_not_found(app, kt):
    r = httpx.get(f"{app}/api/v1/backtests/987654", timeout=30)
    assert r.status_code == 404 and "987654" in r.json()["message"]
    with pytest.raises(ApiError) as err:
        kt.backtest(987654)
    assert err.value.status == 404
    assert httpx.get(f"{app}/api/v1/backtests/0", timeout=30).status_code == 422


def test_starting_a_backtest_needs_the_key(app):
    before = _count(app)
    r = httpx.post(f"{app}/api/v1/backtests", json=BASE, timeout=30)
    assert r.status_code == 401 and "bearer" in r.json()["message"]
    r = httpx.post(
        f"{app}/api/v1/backtests", json=BASE, headers={"Authorization": "Bearer no"}, timeout=30
    )
    assert r.status_code == 401 and "invalid API key" in r.json()["message"]
    assert _count(app) == before


# ------------------------------------------------------------- the document, without Ray
class _Unreachable:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"route body reached gateway.{name}")


def test_without_a_configured_key_starting_a_backtest_is_forbidden_and_validation_comes_first():
    settings = Settings(_env_file=None, rate_limit_per_s=0)
    bare = TestClient(create_app(_Unreachable(), auth=AuthConfig(key=None), settings=settings))
    r = bare.post("/api/v1/backtests", json=BASE)
    assert r.status_code == 403 and "KITRADE_API_KEY" in r.json()["message"]
    keyed = TestClient(create_app(_Unreachable(), auth=AuthConfig(key=KEY), settings=settings))
    r = keyed.post("/api/v1/backtests", json={**BASE, "strategy": "x"}, headers=AUTH)
    assert r.status_code == 422 and "not both" in r.json()["message"]
    r = keyed.post("/api/v1/backtests", json={**BASE, "costs": {"fixed": -1}}, headers=AUTH)
    assert r.status_code == 422 and "fixed" in r.json()["message"]
    doc = keyed.get("/openapi.json").json()
    post = doc["paths"]["/api/v1/backtests"]["post"]
    assert {"202", "401", "403", "404", "413", "422", "429", "503"} <= set(post["responses"])
    body = doc["components"]["schemas"]["BacktestRequest"]
    assert len(body["oneOf"]) == 2 and body["additionalProperties"] is False
    costs = doc["components"]["schemas"]["BacktestCosts"]["properties"]
    assert costs["commission"]["anyOf"][0]["minimum"] == 0
    kinds = doc["components"]["schemas"]["StrategySpec"]["properties"]["kind"]
    assert "forecast_threshold" in kinds["enum"] and kinds["default"] == "parameters"


def test_the_documented_kinds_are_the_engines():
    from typing import get_args

    from kitrade.backtest.strategies import STRATEGY_KINDS
    from kitrade.schemas import BacktestKind, StrategyKind

    assert set(get_args(BacktestKind)) == set(STRATEGY_KINDS)
    assert set(get_args(StrategyKind)) == set(STRATEGY_KINDS) | {"parameters"}
    assert StrategySpec(name="x", symbols=["A"]).kind == "parameters"
