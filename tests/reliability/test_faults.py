"""Break the running platform and measure: requests lost, time to recover."""

from __future__ import annotations

import time

import httpx
import pytest
import ray

from tests.reliability.conftest import KEY, TINY, Load

pytestmark = pytest.mark.slow
PATHS = ["/api/v1/forecast/EURUSD?horizon=6", "/api/v1/forecast/GOOG?horizon=6"]


def _named(fragment: str) -> list[dict]:
    return [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if fragment in a["name"] and a["namespace"] == "serve"
    ]


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def _wait(cond, timeout_s: float = 60.0, step: float = 0.2) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(step)
    return time.monotonic() - t0


def test_forecast_replica_killed_under_load(platform, record):
    base = platform["base"]
    with Load(base, PATHS, threads=4) as load:
        time.sleep(2.0)
        before = {a["name"] for a in _named("forecast")}
        assert len(before) == 2
        victim = sorted(before)[0]
        t_kill = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        replaced = _wait(
            lambda: len({a["name"] for a in _named("forecast")} - {victim}) == 2, timeout_s=60
        )
        time.sleep(2.0)
    total = len(load.results)
    lost = len(load.failed())
    ok_ratio = 1 - lost / total
    record("forecast replica killed under load", ok_ratio >= 0.99, lost, replaced)
    assert total > 50 and ok_ratio >= 0.99, (total, load.failed()[:10])
    del t_kill


def test_serve_controller_and_proxy_killed_under_load(platform, record):
    base = platform["base"]
    with Load(base, PATHS, threads=4) as load:
        time.sleep(1.0)
        controller = _named("SERVE_CONTROLLER_ACTOR")
        assert controller
        t0 = time.monotonic()
        ray.kill(ray.get_actor(controller[0]["name"], namespace="serve"), no_restart=False)
        time.sleep(3.0)
        lost_controller = len(load.failed(since=t0))
        proxies = _named("SERVE_PROXY_ACTOR")
        assert proxies
        t1 = time.monotonic()
        ray.kill(ray.get_actor(proxies[0]["name"], namespace="serve"), no_restart=True)
        _wait(lambda: _status(f"{base}/health") == 200, timeout_s=90)
        time.sleep(2.0)
    lost_proxy = len(load.failed(since=t1))
    gap = load.recovery_s(t1)
    record("Serve controller killed under load", lost_controller == 0, lost_controller, 0.0)
    record("HTTP proxy killed under load", gap < 60, lost_proxy, gap)
    assert lost_controller == 0  # the data plane does not need the controller
    assert gap < 60


def test_postgres_stopped_during_requests_then_back(platform, record):
    base, pg = platform["base"], platform["pg"]
    assert httpx.get(f"{base}/api/v1/symbols", timeout=10).status_code == 200
    pg.stop(mode="fast")
    t0 = time.monotonic()
    try:
        health = httpx.get(f"{base}/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["components"]["database"]["status"] == "down"
        for path in ("/api/v1/symbols", "/api/v1/forecast/EURUSD?horizon=3"):
            r = httpx.get(f"{base}{path}", timeout=30)
            assert r.status_code == 503, (path, r.text)
            assert "database unavailable" in r.json()["message"]
            assert "Traceback" not in r.text
    finally:
        pg.start()
    t_back = time.monotonic()

    def healthy() -> bool:
        ok = _status(f"{base}/api/v1/symbols") == 200
        return ok and _status(f"{base}/api/v1/forecast/EURUSD") == 200

    recovered = _wait(healthy, timeout_s=60)
    record("PostgreSQL stopped during requests", True, 0, recovered)
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200
    del t0, t_back


def test_corrupt_artifact_only_breaks_its_symbol_and_rollback_repairs(platform, record):
    from pathlib import Path

    from kitrade.training.registry import active_version
    from kitrade.training.tasks import new_run_id, train_symbol

    base, db, settings = platform["base"], platform["db"], platform["settings"]
    auth = {"Authorization": f"Bearer {KEY}"}
    with db.connection() as conn:
        old = active_version(conn, symbol="GOOG").version
    new = train_symbol(settings, "GOOG", run_id=new_run_id(), overrides=TINY | {"random_seed": 3})
    assert httpx.post(
        f"{base}/api/v1/models/GOOG/promote",
        json={"version": new.version},
        headers=auth,
        timeout=60,
    ).is_success
    with db.connection() as conn:
        path = Path(active_version(conn, symbol="GOOG").artifact_path)
    weights = sorted((path / "nf").glob("*.safetensors"))
    assert weights
    weights[0].write_bytes(b"corrupted" + weights[0].read_bytes()[100:])
    t0 = time.monotonic()
    for a in _named("forecast"):  # new replicas load the models from disk
        ray.kill(ray.get_actor(a["name"], namespace="serve"), no_restart=True)

    def goog_broken() -> bool:
        r = httpx.get(f"{base}/api/v1/forecast/GOOG", timeout=30)
        return r.status_code in (409, 503) and "roll back" in r.json()["message"]

    _wait(goog_broken, timeout_s=90)
    assert httpx.get(f"{base}/api/v1/forecast/EURUSD", timeout=30).status_code == 200
    back = httpx.post(
        f"{base}/api/v1/models/GOOG/rollback", json={"to_version": old}, headers=auth, timeout=60
    )
    assert back.status_code == 200, back.text
    repaired = _wait(
        lambda: _status(f"{base}/api/v1/forecast/GOOG") == 200,
        timeout_s=60,
    )
    record("corrupt model artifact", True, 0, time.monotonic() - t0)
    assert repaired < 60
