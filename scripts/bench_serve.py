"""Benchmark: kitrade's forecast route against a no-op Serve deployment and an old-style server.

One run, bounded load on 127.0.0.1 (``--connections`` concurrent clients for
``--seconds`` each):

(a) a no-op FastAPI deployment on the same Serve instance — the platform's floor;
(b) kitrade's ``GET /api/v1/forecast/EURUSD?horizon=24``;
(c) the old system's shape: plain FastAPI on uvicorn (another process) that
    reads the symbol's latest bars from PostgreSQL and calls
    ``NeuralForecast.predict`` per request for the same model artifact
    (serialized: concurrent predicts on one model fail).

Prints req/s, p50 and p99 for each, the ratios, and the resident memory of
the whole running stack (Ray, Serve, PostgreSQL processes).

Usage:
    python scripts/bench_serve.py [--seconds 10] [--connections 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE_SERVER = r"""
import sys
import threading
from pathlib import Path
import uvicorn
from fastapi import FastAPI
from psycopg_pool import ConnectionPool
from kitrade.data.bars import latest_bars, to_training_frame
from kitrade.training.nhits import FittedModel
model = FittedModel.load(Path(sys.argv[1]))
pool = ConnectionPool(sys.argv[3], min_size=1, max_size=4, open=True)
app = FastAPI()
lock = threading.Lock()  # NeuralForecast.predict is not safe to run concurrently

@app.get("/api/v1/forecast/{symbol}")
def forecast(symbol: str, horizon: int = 24):
    # Like the old service: the symbol's latest bars from the database, then predict.
    with pool.connection() as conn:
        bars = latest_bars(conn, symbol=symbol, n=model.config.input_size + 1)
    with lock:
        out = model.predict_reference(to_training_frame(symbol, bars), horizon)  # NeuralForecast.predict
    return {"symbol": symbol, "points": out.assign(ds=out["ds"].astype(str)).to_dict("records")}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(url: str, seconds: float, connections: int) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=connections)) as c:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await c.get(url)
                    ok = r.status_code == 200
                except Exception:  # noqa: BLE001 - counted as an error
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.monotonic() - t0
    arr = np.asarray(lat) * 1000
    return {
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(arr, 50)) if len(arr) else 0.0,
        "p99_ms": float(np.percentile(arr, 99)) if len(arr) else 0.0,
        "errors": errors,
        "requests": len(lat),
    }


def _stack_rss_mib() -> tuple[float, dict[str, float]]:
    """Resident memory of the running stack (Ray, Serve replicas, PostgreSQL), by part.

    The benchmark's own process (load generator, Ray driver that trained the model)
    and the baseline server are not part of the stack and are left out.
    """
    import os

    import psutil

    parts: dict[str, float] = {}
    me = os.getpid()
    for p in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
        if p.info["pid"] == me or not p.info["memory_info"]:
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        name = p.info["name"] or ""
        if "postgres" in name or "postgres" in cmd.split(" ")[0]:
            part = "postgres"
        elif cmd.startswith("ray::") or name.startswith("ray::"):
            part = cmd.split(" ")[0].split(".")[0]  # ray::ServeReplica:kitrade:forecast …
        elif any(k in cmd for k in ("raylet", "gcs_server", "dashboard", "log_monitor", "ray/")):
            part = "ray system"
        else:
            continue
        parts[part] = parts.get(part, 0.0) + p.info["memory_info"].rss / 2**20
    return sum(parts.values()), dict(sorted(parts.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import httpx
    import ray
    from fastapi import FastAPI
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.config import Settings
    from kitrade.data.db import conninfo_for
    from kitrade.data.embedded import EmbeddedPostgres
    from kitrade.data.sources.sample import SampleSource
    from kitrade.data.store import open_store
    from kitrade.data.sync import sync_symbols
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app
    from kitrade.training.tasks import new_run_id, train_symbol

    with tempfile.TemporaryDirectory(prefix="kitrade-bench-serve-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", _free_port())
        server.start()
        baseline = None
        try:
            settings = Settings(
                data_dir=Path(tmp),
                timescale_host="127.0.0.1",
                timescale_port=server.port,
                timescale_db="bench",
                _env_file=None,
            )
            db = open_store(settings, start=False)
            sync_symbols(db, SampleSource(), ["EURUSD"])
            res = train_symbol(settings, "EURUSD", run_id=new_run_id(), overrides={"max_steps": 50})
            with db.connection() as conn:
                artifact = conn.execute(
                    "SELECT artifact_path FROM model_versions WHERE version=%s", (res.version,)
                ).fetchone()[0]
            db.close()

            bport = _free_port()
            baseline = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    BASELINE_SERVER,
                    artifact,
                    str(bport),
                    conninfo_for(settings),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            port = _free_port()
            env = {
                "TIMESCALE_HOST": "127.0.0.1",
                "TIMESCALE_PORT": str(server.port),
                "TIMESCALE_DB": "bench",
                "KITRADE_DATA_DIR": tmp,
            }
            connect(num_cpus=2)
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(AppArgs(env=env)), name="kitrade", route_prefix="/")
            noop_api = FastAPI()

            # Same CPU share as kitrade's gateway replica; the default (1 CPU) would not fit
            # next to the kitrade app on a 2-CPU cluster and serve.run would wait forever.
            @serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
            @serve.ingress(noop_api)
            class Noop:
                @noop_api.get("/")
                async def ok(self) -> dict[str, bool]:  # async: no thread-pool hop, the true floor
                    return {"ok": True}

            serve.run(Noop.bind(), name="noop", route_prefix="/noop")
            base = f"http://127.0.0.1:{port}"
            urls = {
                "noop": f"{base}/noop/",
                "kitrade": f"{base}/api/v1/forecast/EURUSD?horizon=24",
                "baseline": f"http://127.0.0.1:{bport}/api/v1/forecast/EURUSD?horizon=24",
            }
            deadline = time.monotonic() + 120
            for url in urls.values():
                while True:
                    try:
                        if httpx.get(url, timeout=30).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{url} never answered")
                    time.sleep(0.5)
            results = {}
            for name, url in urls.items():
                asyncio.run(_load(url, 2.0, args.connections))  # warm-up
                results[name] = asyncio.run(_load(url, args.seconds, args.connections))
            rss, rss_parts = _stack_rss_mib()
            serve.shutdown()
            ray.shutdown()
        finally:
            if baseline is not None:
                baseline.terminate()
            server.stop(mode="immediate")

    a, b, c = results["noop"], results["kitrade"], results["baseline"]
    figures = {
        "noop_rps": a["rps"],
        "kitrade_rps": b["rps"],
        "baseline_rps": c["rps"],
        "noop_p99_ms": a["p99_ms"],
        "kitrade_p99_ms": b["p99_ms"],
        "baseline_p99_ms": c["p99_ms"],
        "noop_p50_ms": a["p50_ms"],
        "kitrade_p50_ms": b["p50_ms"],
        "baseline_p50_ms": c["p50_ms"],
        "ratio_vs_noop": b["rps"] / a["rps"],
        "ratio_vs_baseline": b["rps"] / c["rps"],
        "p99_ratio_vs_noop": b["p99_ms"] / a["p99_ms"],
        "stack_rss_mib": rss,
        "errors": a["errors"] + b["errors"] + c["errors"],
    }
    print(f"{'endpoint':<40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, r in (
        ("(a) no-op Serve deployment", a),
        ("(b) kitrade forecast", b),
        ("(c) FastAPI + NeuralForecast.predict", c),
    ):
        print(
            f"{label:<40} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7}"
        )
    print(f"(b)/(a) req/s: {figures['ratio_vs_noop']:.2f}x (target >= 0.9x)")
    print(f"(b)/(c) req/s: {figures['ratio_vs_baseline']:.2f}x (target >= 5x)")
    print(f"p99 (b)/(a): {figures['p99_ratio_vs_noop']:.2f}x (target <= 1.5x)")
    print(f"stack resident memory: {rss:.0f} MiB (target < 6144 MiB)")
    for part, mib in rss_parts.items():
        print(f"  {part:<50} {mib:>8.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
