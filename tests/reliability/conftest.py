"""Fault-injection suites: a platform of their own (PostgreSQL, Ray, Serve) to break.

Each case records one row with the ``record`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

KEY = "reliability-key-0123456789"
REQUEST_TIMEOUT_S = 10.0  # Serve's end-to-end HTTP timeout on this platform
TINY = {"max_steps": 20, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}


@dataclass
class Load:
    """Threads that GET ``paths`` in a loop and record (time, status) of every request."""

    base: str
    paths: list[str]
    threads: int = 4
    results: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first failures, for the report
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=15) as c:
            n = 0
            while not self._stop.is_set() and n < 20_000:
                path = self.paths[(i + n) % len(self.paths)]
                n += 1
                try:
                    r = c.get(path)
                    status = r.status_code
                    if status != 200 and len(self.errors) < 20:
                        self.errors.append(f"{status} {path}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    # 0: refused at connect (never accepted, nothing ran: safe to retry);
                    # -1: accepted, then the connection broke or timed out (lost)
                    status = 0 if isinstance(exc, httpx.ConnectError) else -1
                    if len(self.errors) < 20:
                        self.errors.append(f"{type(exc).__name__} {path}")
                self.results.append((time.monotonic(), status))
                if status <= 0:
                    time.sleep(0.05)  # a client backs off from a broken connection

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def wait_requests(self, n: int, since: float = 0.0, timeout_s: float = 120.0) -> None:
        """Block until ``n`` requests have finished since ``since`` (a load window counted
        in requests, not seconds: a busy machine makes it longer, never emptier)."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for t, _ in list(self.results) if t >= since) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} requests in {timeout_s:g} s: {self.errors}")
            time.sleep(0.05)

    def failed(self, since: float = 0.0) -> list[tuple[float, int]]:
        return [(t, s) for t, s in self.results if t >= since and s != 200]

    def refused(self, since: float = 0.0) -> int:
        """Connection attempts refused since ``since`` (the request never reached us)."""
        return sum(1 for t, s in self.results if t >= since and s == 0)

    def lost(self, since: float = 0.0) -> int:
        """Requests accepted since ``since`` that got no good answer."""
        return sum(1 for t, s in self.results if t >= since and s not in (0, 200))

    def recovery_s(self, t0: float) -> float:
        """Seconds from ``t0`` to the last failed request (0 when none failed)."""
        last_bad = max((t for t, s in self.results if t >= t0 and s != 200), default=None)
        return 0.0 if last_bad is None else last_bad - t0


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Its own PostgreSQL (so stopping it disturbs no other suite), sample bars, tiny
    EURUSD and GOOG models, a local Ray cluster and the Serve app with two forecast
    replicas and fast health checks. A module's ``PLATFORM_ENV`` dict adds settings."""
    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.config import Settings
    from kitrade.data.embedded import EmbeddedPostgres
    from kitrade.data.sources.sample import SampleSource
    from kitrade.data.store import open_store
    from kitrade.data.sync import sync_symbols
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app
    from kitrade.training.tasks import new_run_id, train_symbol

    root = tmp_path_factory.mktemp("reliability")
    pg = EmbeddedPostgres(root / "pgdata", free_port())
    pg.start()
    settings = Settings(
        data_dir=Path(root),
        timescale_host="127.0.0.1",
        timescale_port=pg.port,
        timescale_db="kitrade_rel",
        _env_file=None,
    )
    db = open_store(settings, start=False)
    sync_symbols(db, SampleSource(), ["EURUSD", "GOOG"])
    for sym in ("EURUSD", "GOOG"):
        train_symbol(settings, sym, run_id=new_run_id(), overrides=TINY)
    env = {
        "TIMESCALE_HOST": "127.0.0.1",
        "TIMESCALE_PORT": str(pg.port),
        "TIMESCALE_DB": "kitrade_rel",
        "TIMESCALE_USER": "postgres",
        "KITRADE_DATA_DIR": str(root),
        "KITRADE_API_KEY": KEY,
        "KITRADE_LLM_BASE_URL": "",
        **getattr(request.module, "PLATFORM_ENV", {}),
    }
    args = AppArgs(
        env=env,
        model_refresh_s=1.0,
        forecast_replicas=2,
        health_check_period_s=1.0,
        health_check_timeout_s=5.0,
        gateway_cache=False,  # every request reaches the forecast replicas we break
    )
    port = free_port()
    # Serve restarts an unhealthy proxy after 3 failed checks: 1 s apart here, not 10 s.
    fast = {
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "1",
        "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "2",
    }
    saved = {k: os.environ.get(k) for k in fast}
    os.environ.update(fast)
    connect(num_cpus=4)
    serve.start(
        http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": REQUEST_TIMEOUT_S}
    )
    serve.run(build_app(args), name="kitrade", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while httpx.get(f"{base}/health", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "platform did not become healthy"
        time.sleep(0.5)
    yield {"base": base, "pg": pg, "db": db, "settings": settings, "args": args}
    serve.shutdown()
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    db.close()
    pg.stop(mode="immediate")
