"""The Serve application on a real local Ray cluster, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from kitrade.client import ApiError, Client
from kitrade.data.sources.sample import SampleSource
from kitrade.data.sync import sync_symbols
from kitrade.schemas import StrategySpec, SymbolIn
from kitrade.training.registry import active_version
from tests.conftest import app_env, deploy_kitrade, free_port

pytestmark = pytest.mark.slow
KEY = "test-key-0123456789"
# One token per 1000 s: for the few minutes of this module a bucket holds its burst and
# gets nothing back, so what the limiter allows depends on how many requests were made,
# never on how fast this machine made them. The rate-limit tests send from addresses of
# their own (127.0.0.2, 127.0.0.3: loopback, not trusted for X-Forwarded-For), so their
# buckets are theirs alone; the other tests' writes stay far below the burst.
RATE, BURST = 0.001, 20
LIMITS = {"KITRADE_RATE_LIMIT_PER_S": str(RATE), "KITRADE_RATE_LIMIT_BURST": str(BURST)}
TINY = {"max_steps": 30, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}


@pytest.fixture(scope="module")
def app(module_settings, db):
    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.training.tasks import new_run_id, train_symbol

    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
    sync_symbols(db, SampleSource())
    for sym in ("EURUSD", "GOOG"):
        train_symbol(module_settings, sym, run_id=new_run_id(), overrides=TINY)
    port = free_port()
    connect(num_cpus=4)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = deploy_kitrade(app_env(module_settings, KEY, **LIMITS), port, timeout_s=60)
    yield base
    serve.shutdown()
    ray.shutdown()


def _until(cond, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s:g} s"
        time.sleep(0.05)


def _from(app: str, address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (a loopback address of its own)."""
    return httpx.Client(
        base_url=app, timeout=30, transport=httpx.HTTPTransport(local_address=address)
    )


def test_forecast_with_intervals_and_cache(app, db):
    r = httpx.get(f"{app}/api/v1/forecast/EURUSD", params={"horizon": 12}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    with db.connection() as conn:
        active = active_version(conn, symbol="EURUSD").version
        last = conn.execute("SELECT max(ts) FROM bars WHERE symbol='EURUSD'").fetchone()[0]
    assert body["version"] == active and body["horizon"] == 12 and len(body["points"]) == 12
    assert body["last_bar"].startswith(last.strftime("%Y-%m-%dT%H:%M"))
    for p in body["points"]:
        assert p["lo_95"] <= p["lo_80"] <= p["hi_80"] <= p["hi_95"]
    again = httpx.get(f"{app}/api/v1/forecast/EURUSD", params={"horizon": 5}, timeout=30).json()
    assert again["cached"] is True and again["points"] == body["points"][:5]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/api/v1/forecast/EURUSD?horizon=25", 422, "expected 1..24"),
        ("/api/v1/forecast/NOPE", 404, "not found"),
        ("/api/v1/forecast/BTCUSD", 409, "train"),
        ("/api/v1/forecast/eur$usd", 422, "symbol"),
        ("/api/v1/forecast/EURUSD?horizon=abc", 422, "horizon"),
    ],
)
def test_forecast_errors_are_json_with_a_message(app, path, status, fragment):
    r = httpx.get(f"{app}{path}", timeout=30)
    assert r.status_code == status, r.text
    body = r.json()
    assert fragment in body["message"] and "Traceback" not in r.text


def test_state_changing_routes_need_the_key(app):
    spec = {"symbol": "XAUUSD", "timeframe": "H4"}
    r = httpx.post(f"{app}/api/v1/symbols", json=spec, timeout=30)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["message"]
    r = httpx.post(
        f"{app}/api/v1/symbols", json=spec, timeout=30, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401 and r.json()["message"] == "invalid API key"
    r = httpx.post(
        f"{app}/api/v1/symbols", json=spec, timeout=30, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 201 and r.json()["symbol"] == "XAUUSD", r.text
    assert httpx.get(f"{app}/api/v1/symbols", timeout=30).status_code == 200  # reads are open


def test_no_key_configured_refuses_writes_with_how_to():
    from kitrade.deployments.gateway.auth import AuthConfig, Forbidden, Unauthorized, check

    with pytest.raises(Forbidden, match="set KITRADE_API_KEY"):
        check(AuthConfig(key=None), "Bearer anything", write=True)
    check(AuthConfig(key=None), "", write=False)  # reads stay open by default
    with pytest.raises(Forbidden, match="KITRADE_READ_AUTH=1"):
        check(AuthConfig(key=None, read_auth=True), "", write=False)
    with pytest.raises(Unauthorized, match="invalid API key"):
        check(AuthConfig(key="k" * 20, read_auth=True), "Bearer wrong", write=False)


def test_health_docs_and_compatible_paths(app):
    h = httpx.get(f"{app}/health", timeout=30)
    assert h.status_code == 200
    comps = h.json()["components"]
    assert {"database", "forecast", "analysis", "data", "llm", "ray"} <= set(comps)
    assert comps["database"]["status"] == "ok" and comps["ray"]["status"] == "ok"
    assert httpx.get(f"{app}/docs", timeout=30).status_code == 200
    paths = httpx.get(f"{app}/openapi.json", timeout=30).json()["paths"]
    for p in (
        "/api/v1/forecast/{symbol}",
        "/api/v1/forecast/train-all",
        "/api/v1/forecast/training/progress",
        "/api/v1/symbols",
        "/health",
    ):
        assert p in paths


def test_client_round_trip_and_promotion_picked_up_without_restart(
    app, module_settings, db, record
):
    from kitrade.training.tasks import new_run_id, train_symbol

    with Client(app, api_key=KEY) as kt:
        assert {s.symbol for s in kt.symbols()} >= {"EURUSD", "GOOG", "BTCUSD"}
        assert len(kt.bars("GOOG", last=3)) == 3
        kt.create_strategy(
            StrategySpec(name="trend", symbols=["GOOG"], timeframe="D1", parameters={"window": 20})
        )
        assert [s.name for s in kt.strategies("GOOG")] == ["trend"]
        with pytest.raises(ApiError) as info:
            kt.create_symbol(SymbolIn(symbol="GOOG"))
        assert info.value.status == 409 and "already exists" in info.value.message
        before = kt.forecast("GOOG", horizon=3)
        new = train_symbol(
            module_settings, "GOOG", run_id=new_run_id(), overrides=TINY | {"random_seed": 7}
        )
        answers: list[tuple[int, str | None]] = []  # (status, version served)
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=app, timeout=30) as c:
                while not stop.is_set() and len(answers) < 5000:
                    r = c.get("/api/v1/forecast/GOOG", params={"horizon": 3})
                    ok = r.status_code == 200
                    answers.append((r.status_code, r.json()["version"] if ok else None))

        t = threading.Thread(target=hammer)
        t.start()
        _until(lambda: len(answers) >= 5, what="load before the swap")
        kt.promote("GOOG", new.version)  # override the gate either way
        # the load window ends when the new version has been served a while, not after
        # a fixed time: on a busy machine the swap may take longer
        _until(
            lambda: sum(1 for _, v in answers if v == new.version) >= 20,
            what="20 answers from the promoted version",
        )
        stop.set()
        t.join(timeout=30)
        statuses = [s for s, _ in answers]
        assert set(statuses) == {200}, statuses  # none failed during the swap
        assert answers[0][1] == before.version  # the load spanned the swap
        record("model promotion under load", True, 0, None)
        after = kt.forecast("GOOG", horizon=3)
        assert after.version == new.version != before.version
        back = kt.rollback("GOOG")
        assert back.version == before.version
        assert kt.forecast("GOOG", horizon=3).version == before.version
        with pytest.raises(ApiError) as bad:
            kt.promote("GOOG", "../../etc/passwd")
        assert bad.value.status == 422


def _poll_forecast(app: str, symbol: str, until, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{app}/api/v1/forecast/{symbol}", params={"horizon": 2}, timeout=30
        ).json()
        if until(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"forecast never changed: {body}")


def test_changes_made_outside_the_api_reach_forecasts_served_from_the_gateway_cache(app, db):
    """New bars and promotions committed by another process (a CLI, a sync job) are seen:
    the gateway's hot cache is invalidated by PostgreSQL notifications, never pinned stale."""
    import pandas as pd

    from kitrade.data.bars import ingest_bars, latest_bars
    from kitrade.training.registry import list_versions, promote

    for _ in range(3):  # warm: the next answers come from the gateway's cache
        first = httpx.get(f"{app}/api/v1/forecast/EURUSD", params={"horizon": 2}, timeout=30)
    assert first.json()["cached"] is True
    hot = httpx.get(f"{app}/health", timeout=30).json()["components"]["forecast"]
    assert hot["gateway_cache"]["live"] is True and hot["gateway_cache"]["hits"] >= 1
    with db.connection() as conn:
        last = latest_bars(conn, symbol="EURUSD", n=1)
    bar = last.assign(ts=last["ts"] + pd.Timedelta(hours=1), close=last["close"] * 1.01)
    with db.connection() as conn:
        ingest_bars(conn, symbol="EURUSD", bars=bar)
    new_ts = bar["ts"].iloc[0].strftime("%Y-%m-%dT%H:%M")
    body = _poll_forecast(app, "EURUSD", lambda b: b["last_bar"].startswith(new_ts))
    assert body["cached"] is False or body["last_bar"].startswith(new_ts)

    with db.connection() as conn:
        versions = list_versions(conn, symbol="GOOG")
    active = next(v for v in versions if v.status == "active")
    other = next(v for v in versions if v.status != "active")
    for _ in range(3):
        httpx.get(f"{app}/api/v1/forecast/GOOG", params={"horizon": 2}, timeout=30)
    with db.connection() as conn:
        promote(conn, symbol="GOOG", version=other.version)
    _poll_forecast(app, "GOOG", lambda b: b["version"] == other.version)
    with db.connection() as conn:
        promote(conn, symbol="GOOG", version=active.version)
    _poll_forecast(app, "GOOG", lambda b: b["version"] == active.version)


def test_old_system_readme_curl_lines_work(app):
    """The compatibility table's curl examples, run as the old README showed them."""
    import json as _json
    import subprocess

    base = app.replace("127.0.0.1", "localhost")

    def curl(*args: str) -> tuple[int, str]:
        res = subprocess.run(
            [shutil.which("curl") or "curl", "-s", "-m", "60", "-w", "\\n%{http_code}", *args],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )
        body, _, code = res.stdout.rpartition("\n")
        return int(code), body

    code, body = curl(f"{base}/api/v1/forecast/EURUSD?horizon=24")
    assert code == 200 and len(_json.loads(body)["points"]) == 24
    code, body = curl(f"{base}/api/v1/symbols")
    assert code == 200 and "EURUSD" in body
    code, body = curl(f"{base}/health")
    assert code == 200
    code, body = curl(
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"symbol": "EURUSD", "question": "Should I buy or sell EURUSD?"}',
        f"{base}/api/v1/analyze",
    )
    assert code == 200 and _json.loads(body)["recommendation"] in ("buy", "sell", "hold")
    code, body = curl(
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {KEY}",
        f"{base}/api/v1/forecast/train-all?force=true&background=true",
    )
    assert code == 202, body
    run_id = _json.loads(body)["run_id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        code, body = curl(f"{base}/api/v1/forecast/training/progress?run_id={run_id}")
        if code == 200 and _json.loads(body).get("finished_at"):
            break
        time.sleep(1)
    progress = _json.loads(body)
    assert progress["run_id"] == run_id and progress["finished_at"], progress
    assert {s["state"] for s in progress["symbols"]} <= {"done", "skipped", "failed"}
    code, body = curl(f"{base}/api/v1/forecast/training/progress")
    assert code == 200


def test_guards_apply_through_serve(app, record):
    big = httpx.post(
        f"{app}/api/v1/knowledge",
        content=b'{"text": "' + b"x" * 2_100_000 + b'", "source": "big.md"}',
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413 and "expected at most" in big.json()["message"]
    bogus = {"Authorization": "Bearer someone-else-0123456789"}
    with _from(app, "127.0.0.2") as c:  # a bucket of its own: exactly BURST tokens
        codes = [c.post("/api/v1/symbols", json={}, headers=bogus).status_code for _ in range(25)]
        limited = c.post("/api/v1/symbols", json={}, headers=bogus)
        mine = c.post("/api/v1/symbols", json={}, headers={"Authorization": f"Bearer {KEY}"})
    assert codes == [401] * BURST + [429] * (25 - BURST), codes  # the wrong key: its address
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 900
    assert f"expected at most {RATE:g} POST requests/s (burst {BURST})" in limited.json()["message"]
    assert mine.status_code == 422  # another key's bucket is untouched
    record("oversized body (2.1 MB) -> 413", True, 0, None)
    record("rate limit per key -> 429 with Retry-After", True, 0, None)


def test_secrets_never_reach_logs_or_error_messages(app, record):
    """The API key (sent right and wrong) never shows in answers or in any Ray/Serve log.
    The logs are read once Serve has written each request's own line (found by the request
    id sent with it), so a leak logged with the request would be there."""
    import uuid
    from pathlib import Path

    import ray

    wrong = "wrong-key-ABCDEFGHIJKLMNOP"
    sent = [
        ("POST", "/api/v1/sync", {"Authorization": f"Bearer {wrong}"}, None),
        ("POST", "/api/v1/symbols", {"Authorization": wrong}, {}),
        (
            "POST",
            "/api/v1/models/EURUSD/promote",
            {"Authorization": f"Bearer {KEY}"},
            {"version": "EURUSD-20200101T000000-abcdef"},
        ),
        ("GET", "/health", {}, None),
    ]
    ids = [f"secret-probe-{uuid.uuid4().hex}" for _ in sent]
    with httpx.Client(base_url=app, timeout=30) as c:
        answers = [
            c.request(m, path, headers={**h, "x-request-id": rid}, json=body)
            for (m, path, h, body), rid in zip(sent, ids, strict=True)
        ]
    for r in answers:
        assert KEY not in r.text and wrong not in r.text, r.text
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"

    def contents() -> list[tuple[Path, bytes]]:
        return [
            (p, p.read_bytes())
            for p in logs.rglob("*")
            if p.is_file() and p.stat().st_size < 50_000_000
        ]

    def every_request_logged() -> bool:  # the positive event: Serve logged each request
        text = b"".join(data for p, data in contents() if "serve" in p.parts)
        return all(rid.encode() in text for rid in ids)

    _until(every_request_logged, what="Serve's log lines of the four requests")
    leaked = [str(p) for p, data in contents() if KEY.encode() in data or wrong.encode() in data]
    assert leaked == []
    record("API key in answers or logs", True, 0, None)


def _scrape(port: int) -> dict[str, float]:
    """``name{…symbol="X"…}`` sums from Ray's Prometheus endpoint, keyed ``name|tag=value``."""
    import re

    sums: dict[str, float] = {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        m = re.match(r"^(ray_kitrade_\w+)\{(.*)\} ([0-9.eE+-]+)$", line)
        if not m:
            continue
        name, labels, value = m.groups()
        for tag in ("symbol", "cache", "reason", "version"):
            t = re.search(rf'\b{tag}="([^"]*)"', labels)
            if t:
                key = f"{name}|{tag}={t.group(1)}"
                sums[key] = sums.get(key, 0.0) + float(value)
        sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def test_metrics_reach_rays_prometheus_endpoint(app, db):
    """After a few requests, Ray's metrics endpoint carries kitrade's counts beside Serve's."""
    import ray

    port = ray._private.worker._global_node.metrics_export_port
    with httpx.Client(base_url=app, timeout=30) as c:
        for _ in range(3):
            assert c.get("/api/v1/forecast/GOOG", params={"horizon": 2}).status_code == 200
        assert c.get("/api/v1/sync/status").status_code == 200
    with _from(app, "127.0.0.3") as c:  # a bucket of its own: BURST tokens, then 429
        bogus = [c.post("/api/v1/sync", headers={"Authorization": "Bearer x"}) for _ in range(25)]
    assert [r.status_code for r in bogus] == [401] * BURST + [429] * (25 - BURST)
    with db.connection() as conn:
        goog = active_version(conn, symbol="GOOG").version
    want = {
        "ray_kitrade_forecast_requests_total|symbol=GOOG": 3,
        "ray_kitrade_forecast_latency_seconds_count|symbol=GOOG": 3,
        "ray_kitrade_forecast_pass_series_count": 1,  # the first GOOG forecast's pass
        f"ray_kitrade_model_version_served|version={goog}": 1,
        "ray_kitrade_sync_lag_seconds|symbol=GOOG": 1,
        "ray_kitrade_guard_refusals_total|reason=rate_limited": 1,
    }
    deadline = time.monotonic() + 60  # the agent exports every few seconds
    while True:
        got = _scrape(port)
        missing = {k: got.get(k) for k, n in want.items() if got.get(k, 0) < n}
        if not missing:
            break
        assert time.monotonic() < deadline, f"not exported within 60 s: {missing}"
        time.sleep(2)
    assert any(
        k.startswith("ray_serve_")
        for k in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.split()
    ), "Serve's own metrics"
    assert got["ray_kitrade_forecast_requests_total|cache=gateway"] >= 1  # repeats: hot cache
