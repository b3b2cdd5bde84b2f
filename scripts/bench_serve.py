"""Benchmark: kitrade's forecast route against a no-op Serve deployment and an old-style server.

One run, bounded load on 127.0.0.1 (``--connections`` concurrent clients for
``--seconds`` each):

(a) a no-op FastAPI deployment on the same Serve instance — the platform's floor;
(b) kitrade's ``GET /api/v1/forecast/EURUSD?horizon=24``;
(c) the old system's shape: plain FastAPI on uvicorn (another process) that
    reads the symbol's latest bars from PostgreSQL and calls
    ``NeuralForecast.predict`` per request for the same model artifact
    (serialized: concurrent predicts on one model fail).

(b) is answered from the gateway's hot cache after its first request. The
uncached path is measured too, the same way on both sides:

(d) kitrade and (e) the old-style server, each asked the same sequence over
``--symbols`` symbols with trained (small) NHITS models, every horizon from 1
to the model's maximum (symbol by symbol, horizon by horizon), while one new
bar is ingested every second for ``--ingest`` of the symbols through
``kitrade.data.bars.ingest_bars`` (its NOTIFY drops their cached forecasts).
Each answer says whether it came from a cache (``cached``); the share of such
answers is printed, with the latency of the answers that did not, and the
sizes of the batches the forecast deployment's ``@serve.batch`` formed.

The forecast engine also records how many series each forward pass carried;
their mean and maximum over (d) are printed.

(f) A burst across symbols, ``--burst-rounds`` times (after one warm-up
round): one new bar is ingested into every symbol of the mix (so no cache
holds a current forecast of any of them), then one request per symbol is sent
at once (``--symbols`` concurrent requests, default horizon). It measures
whether requests for different symbols reach the forecast deployment together
and share forward passes: requests per ``@serve.batch`` batch, series per
forward pass (mean, max), forward passes per burst, and the burst's wall time
(p50, p99 over the rounds), with the share of answers that were fresh
(not cached, from the new bar). With ``--scope symbol`` (the default) every
symbol has its own model and every pass carries one series; with ``--scope
shared`` EURUSD and the mix's symbols (all H1, one group) are trained as one
shared model, so one pass can answer every symbol of a batch.

Prints req/s, p50 and p99 for each, the ratios, and the resident memory of
the whole running stack (Ray, Serve, PostgreSQL processes). ``--burst-only``
skips (a)-(e) and the old-style server (train, serve, burst).

Usage:
    python scripts/bench_serve.py [--seconds 10] [--connections 8] [--symbols 16]
        [--ingest 8] [--scope symbol|shared] [--burst-rounds 20] [--burst-only]
        [--tiny] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _bench_setup import bench_store, free_port

BASELINE_SERVER = r"""
import json
import sys
import threading
from pathlib import Path
import uvicorn
from fastapi import FastAPI, HTTPException
from psycopg_pool import ConnectionPool
from kitrade.data.bars import latest_bars, to_training_frame
from kitrade.training.nhits import FittedModel
models = {s: FittedModel.load(Path(p)) for s, p in json.loads(sys.argv[1]).items()}
# NeuralForecast.predict is not safe to run concurrently on one model
locks = {s: threading.Lock() for s in models}
pool = ConnectionPool(sys.argv[3], min_size=1, max_size=4, open=True)
app = FastAPI()

@app.get("/api/v1/forecast/{symbol}")
def forecast(symbol: str, horizon: int = 24):
    # Like the old service: the symbol's latest bars from the database, then predict.
    model = models.get(symbol)
    if model is None:
        raise HTTPException(404, f"no model for {symbol}")
    with pool.connection() as conn:
        bars = latest_bars(conn, symbol=symbol, n=model.config.input_size + 1)
    with locks[symbol]:
        # NeuralForecast.predict
        out = model.predict_reference(to_training_frame(symbol, bars), horizon)
    points = out.assign(ds=out["ds"].astype(str)).to_dict("records")
    return {"symbol": symbol, "horizon": horizon, "cached": False, "points": points}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""

#: The old-style server's shape, printed with its figures.
BASELINE_SHAPE = (
    "1 uvicorn process, sync route on the AnyIO thread pool (40 threads), "
    "NeuralForecast.predict serialized per model, PostgreSQL pool of 4"
)
_CACHED = re.compile(rb'"cached":\s*true')
SYN_BARS = 600


def synthetic(i: int, n: int = SYN_BARS) -> pd.DataFrame:
    """Hourly bars of synthetic symbol ``i``: a daily cycle on a random walk."""
    rng = np.random.default_rng(200 + i)
    t = np.arange(n)
    close = 100 + 2 * np.sin(2 * np.pi * t / 24 + i) + np.cumsum(rng.normal(0, 0.2, n))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "open": close,
            "high": close + 0.3,
            "low": close - 0.3,
            "close": close,
            "volume": 1.0,
        }
    )


INGESTER = r"""
import json
import sys
import time
import pandas as pd
import psycopg
from kitrade.data.bars import ingest_bars
job = json.loads(sys.argv[1])
nxt = {s: pd.Timestamp(ts) for s, ts in job["next"].items()}
bars = 0
with psycopg.connect(job["conninfo"]) as conn:
    print("ready", flush=True)
    seconds = float(sys.stdin.readline())
    start = time.monotonic()
    tick = 0
    while tick < seconds:
        time.sleep(max(0.0, start + tick - time.monotonic()))
        for s in nxt:
            px = 100.0 + (tick % 7) * 0.1
            bar = pd.DataFrame({"ts": [nxt[s]], "open": [px], "high": [px + 0.3],
                                "low": [px - 0.3], "close": [px], "volume": [1.0]})
            ingest_bars(conn, symbol=s, bars=bar)  # commits, and NOTIFY reaches the caches
            nxt[s] += pd.Timedelta(hours=1)
            bars += 1
        tick += 1
print(json.dumps({"next": {s: ts.isoformat() for s, ts in nxt.items()}, "bars": bars}))
"""


class Ingester:
    """One new hourly bar for each of ``symbols`` every second (ticks at 0, 1, 2, ... s).

    Runs in its own process (started ahead, imports done), so its work does not
    share the load generator's interpreter.
    """

    def __init__(self, conninfo: str, symbols: list[str], last: dict[str, pd.Timestamp]) -> None:
        self._conninfo = conninfo
        self._next = {s: (last[s] + pd.Timedelta(hours=1)).isoformat() for s in symbols}
        self._proc: subprocess.Popen[str] | None = None
        self.bars = 0

    def prepare(self) -> None:
        """Start the ingest process; returns once it is connected and waits for ``go``."""
        job = json.dumps({"conninfo": self._conninfo, "next": self._next})
        self._proc = subprocess.Popen(
            [sys.executable, "-c", INGESTER, job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._proc.stdout is None or self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the ingest process did not start")

    def go(self, seconds: float) -> None:
        """Start ingesting for ``seconds``."""
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("go() before prepare()")
        self._proc.stdin.write(f"{seconds}\n")
        self._proc.stdin.flush()

    def finish(self) -> None:
        """Wait for the run to end; the next run continues after its last bar."""
        if self._proc is None:
            raise RuntimeError("finish() before prepare()")
        out, _ = self._proc.communicate(timeout=60)
        done = json.loads(out.strip().splitlines()[-1])
        self._next, self.bars = done["next"], self.bars + done["bars"]
        self._proc = None


async def _load(
    urls: str | list[str],
    seconds: float,
    connections: int,
    ingest: Callable[[float], Any] | None = None,
) -> dict[str, float]:
    """``connections`` clients asking ``urls`` in turn (one shared sequence) for ``seconds``.

    Counts the answers that say ``"cached": true`` and the latency of the others.
    """
    import httpx

    seq = [urls] if isinstance(urls, str) else urls
    lat: list[float] = []
    miss_lat: list[float] = []
    hits = 0
    errors = 0
    nxt = itertools.count()
    if ingest is not None:
        ingest(seconds)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=connections)) as c:

        async def worker() -> None:
            nonlocal errors, hits
            while time.monotonic() < deadline:
                url = seq[next(nxt) % len(seq)]
                t0 = time.perf_counter()
                try:
                    r = await c.get(url)
                    ok = r.status_code == 200
                except Exception:  # noqa: BLE001 - counted as an error
                    ok = False
                if not ok:
                    errors += 1
                    continue
                took = time.perf_counter() - t0
                lat.append(took)
                if _CACHED.search(r.content):
                    hits += 1
                else:
                    miss_lat.append(took)

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.monotonic() - t0
    arr = np.asarray(lat) * 1000
    marr = np.asarray(miss_lat) * 1000
    return {
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(arr, 50)) if len(arr) else 0.0,
        "p99_ms": float(np.percentile(arr, 99)) if len(arr) else 0.0,
        "errors": errors,
        "requests": len(lat),
        "hit_share": hits / len(lat) if lat else 0.0,
        "uncached_p50_ms": float(np.percentile(marr, 50)) if len(marr) else 0.0,
        "uncached_p99_ms": float(np.percentile(marr, 99)) if len(marr) else 0.0,
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


def _make_symbols(db: Any, n: int) -> tuple[list[str], dict[str, pd.Timestamp]]:
    """``n`` synthetic hourly symbols next to the sample EURUSD; their names and last bars."""
    from kitrade.data.bars import ingest_bars
    from kitrade.data.symbols import create_symbol
    from kitrade.schemas import SymbolIn

    syms = [f"SYN{i:02d}" for i in range(n)]
    last = {}
    with db.connection() as conn:
        for s in syms:
            create_symbol(conn, spec=SymbolIn(symbol=s, timeframe="H1"))
        conn.commit()
        for i, s in enumerate(syms):
            bars = synthetic(i)
            ingest_bars(conn, symbol=s, bars=bars)
            last[s] = bars["ts"].iloc[-1]
    return syms, last


def _wait(url: str, deadline: float) -> float:
    """Poll ``url`` until it answers 200; returns when it did (``time.monotonic()``)."""
    import httpx

    while True:
        try:
            if httpx.get(url, timeout=30).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} never answered")
        time.sleep(0.2)


def _start_kitrade(env: dict[str, str], port: int) -> None:
    """The kitrade app and the no-op app on one Serve instance."""
    from fastapi import FastAPI
    from ray import serve

    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app

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


def _replica_sizes(reset: bool) -> tuple[list[int], list[int]]:
    """The forecast replica's recent ``@serve.batch`` sizes and series per forward pass."""
    from ray import serve

    handle = serve.get_deployment_handle("forecast", app_name="kitrade")
    batches = handle.batch_sizes.remote(reset=reset).result()
    return batches, handle.pass_sizes.remote(reset=reset).result()


def _miss_run(
    seq: list[str], args: argparse.Namespace, ingester: Ingester, sizes: bool
) -> tuple[dict[str, float], tuple[list[int], list[int]]]:
    """Warm-up, then the uncached mix with ingest; the batch and pass sizes formed meanwhile."""
    asyncio.run(_load(seq, 2.0, args.connections))  # warm-up: models, connections, caches
    ingester.prepare()
    if sizes:
        _replica_sizes(reset=True)
    res = asyncio.run(_load(seq, args.seconds, args.connections, ingest=ingester.go))
    ingester.finish()
    return res, _replica_sizes(reset=False) if sizes else ([], [])


def _new_bars(conn: Any, symbols: list[str]) -> dict[str, pd.Timestamp]:
    """One new hourly bar for each of ``symbols`` (its last close, 0.1 % up); their times."""
    from kitrade.data.bars import ingest_bars, latest_bars

    lasts = {s: latest_bars(conn, symbol=s, n=1).iloc[-1] for s in symbols}
    conn.commit()  # ends the reads' transaction: ingest_bars wants an idle connection
    stamps = {}
    for s, last in lasts.items():
        ts, px = pd.Timestamp(last["ts"]) + pd.Timedelta(hours=1), float(last["close"]) * 1.001
        bar = pd.DataFrame({"ts": [ts], "open": [px], "high": [px * 1.001],
                            "low": [px * 0.999], "close": [px], "volume": [1.0]})  # fmt: skip
        ingest_bars(conn, symbol=s, bars=bar)  # commits; its NOTIFY drops the hot cache entry
        stamps[s] = ts
    return stamps


async def _replica_sizes_async(reset: bool) -> tuple[list[int], list[int]]:
    """``_replica_sizes`` from inside an event loop (a handle's ``result()`` may not block it)."""
    from ray import serve

    handle = serve.get_deployment_handle("forecast", app_name="kitrade")
    batches = await handle.batch_sizes.remote(reset=reset)
    return batches, await handle.pass_sizes.remote(reset=reset)


async def _burst_once(c: Any, base: str, stamps: dict[str, pd.Timestamp]) -> tuple[float, int, int]:
    """One request per symbol, all at once; wall seconds, fresh answers, errors."""
    t0 = time.perf_counter()
    answers = await asyncio.gather(
        *(c.get(f"{base}/api/v1/forecast/{s}") for s in stamps), return_exceptions=True
    )
    wall = time.perf_counter() - t0
    fresh = errors = 0
    for s, r in zip(stamps, answers, strict=True):
        if isinstance(r, BaseException) or r.status_code != 200:
            errors += 1
            continue
        body = r.json()
        fresh += not body["cached"] and pd.Timestamp(body["last_bar"]) == stamps[s]
    return wall, fresh, errors


async def _bursts(
    base: str, conninfo: str, symbols: list[str], rounds: int
) -> tuple[list[float], list[list[int]], list[list[int]], int, int]:
    """``rounds`` bursts after a warm-up one: walls, batch sizes, pass sizes, fresh, errors."""
    import httpx
    import psycopg

    walls: list[float] = []
    batches: list[list[int]] = []
    passes: list[list[int]] = []
    fresh = errors = 0
    limits = httpx.Limits(max_connections=max(len(symbols), 1))
    with psycopg.connect(conninfo) as conn:
        async with httpx.AsyncClient(timeout=60, limits=limits) as c:
            for i in range(rounds + 1):  # round 0 warms up: connections, the pass's shape
                stamps = _new_bars(conn, symbols)
                await asyncio.sleep(0.3)  # the change notifications reach the hot cache
                await _replica_sizes_async(reset=True)
                wall, ok, bad = await _burst_once(c, base, stamps)
                sizes = await _replica_sizes_async(reset=True)
                if i > 0:
                    walls.append(wall)
                    batches.append(sizes[0])
                    passes.append(sizes[1])
                    fresh, errors = fresh + ok, errors + bad
    return walls, batches, passes, fresh, errors


def _burst_run(base: str, conninfo: str, symbols: list[str], rounds: int) -> dict[str, Any]:
    """(f): bursts of one request per symbol after a new bar for each; their figures."""
    walls, batches, passes, fresh, errors = asyncio.run(_bursts(base, conninfo, symbols, rounds))
    flat_b = [n for b in batches for n in b]
    flat_p = [n for p in passes for n in p]
    ms = np.asarray(walls) * 1000
    return {
        "burst_rounds": rounds,
        "burst_symbols": len(symbols),
        "burst_p50_ms": float(np.percentile(ms, 50)),
        "burst_p99_ms": float(np.percentile(ms, 99)),
        "burst_batch_size_mean": float(np.mean(flat_b)) if flat_b else 0.0,
        "burst_batch_size_max": max(flat_b, default=0),
        "burst_batches_per_burst": len(flat_b) / rounds,
        "burst_pass_series_mean": float(np.mean(flat_p)) if flat_p else 0.0,
        "burst_pass_series_max": max(flat_p, default=0),
        "burst_passes_per_burst": len(flat_p) / rounds,
        "burst_fresh_share": fresh / (rounds * len(symbols)),
        "burst_errors": errors,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--symbols", type=int, default=16, help="symbols of the uncached mix")
    parser.add_argument(
        "--ingest", type=int, default=None, help="symbols given a bar a second (default: half)"
    )
    parser.add_argument(
        "--scope",
        choices=("symbol", "shared"),
        default="symbol",
        help="a model per symbol, or one shared model for all (one H1 group)",
    )
    parser.add_argument("--burst-rounds", type=int, default=20, help="bursts of (f)")
    parser.add_argument(
        "--burst-only", action="store_true", help="only (f): no (a)-(e), no old-style server"
    )
    parser.add_argument("--tiny", action="store_true", help="smallest models (tests)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.burst_rounds < 1:
        parser.error("--burst-rounds: expected at least 1")
    return args


def _train(settings: Any, db: Any, symbols: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Train ``symbols`` at ``args.scope`` on a fresh 2-CPU cluster; seconds and artifacts."""
    import ray

    from kitrade.cluster import connect
    from kitrade.data.serving import active_artifacts
    from kitrade.training.runs import train_all

    overrides: dict[str, Any] = (
        {"max_steps": 5, "mlp_units": 16, "cv_windows": 2}
        if args.tiny
        else {"max_steps": 50, "mlp_units": 64}
    )
    connect(num_cpus=2)
    t0 = time.perf_counter()
    trained = train_all(settings, symbols, force=True, overrides=overrides, scope=args.scope)
    train_s = time.perf_counter() - t0
    ray.shutdown()  # its training workers are not part of the serving stack
    failed = [r.symbol for r in trained.results if r.status != "done"]
    if failed:
        raise SystemExit(f"training failed for {failed}")
    with db.connection() as conn:
        artifacts = {r[0]: str(r[2]) for r in active_artifacts(conn)}
    missing = sorted(set(symbols) - set(artifacts))
    if missing:
        raise SystemExit(f"no active model for {missing}")
    return {"train_s": train_s, "artifacts": artifacts}


def _start_baseline(artifacts: dict[str, str], conninfo: str) -> tuple[Any, str, float]:
    """The old-style server in its own process; the process, its URL, its start-up seconds."""
    bport = free_port()
    b_start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE_SERVER, json.dumps(artifacts), str(bport), conninfo],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bbase = f"http://127.0.0.1:{bport}"
    try:
        up = _wait(f"{bbase}/api/v1/forecast/EURUSD?horizon=24", time.monotonic() + 180)
    except BaseException:
        proc.terminate()
        raise
    return proc, bbase, up - b_start


def _paths(
    base: str, bbase: str, syms: list[str], args: argparse.Namespace, ingester: Ingester
) -> dict[str, Any]:
    """(a)-(e): the single-URL runs and both uncached mixes; results, sizes, max horizon."""
    import httpx

    max_h = int(httpx.get(f"{base}/api/v1/forecast/{syms[0]}", timeout=30).json()["max_horizon"])
    mix = [f"/api/v1/forecast/{s}?horizon={h}" for s in syms for h in range(1, max_h + 1)]
    _wait(f"{base}/noop/", time.monotonic() + 180)
    urls = {
        "noop": f"{base}/noop/",
        "kitrade": f"{base}/api/v1/forecast/EURUSD?horizon=24",
        "baseline": f"{bbase}/api/v1/forecast/EURUSD?horizon=24",
    }
    results = {}
    for name, url in urls.items():
        asyncio.run(_load(url, 2.0, args.connections))  # warm-up
        results[name] = asyncio.run(_load(url, args.seconds, args.connections))
    results["miss"], sizes = _miss_run([base + m for m in mix], args, ingester, True)
    results["baseline_miss"], _ = _miss_run([bbase + m for m in mix], args, ingester, False)
    return {"results": results, "sizes": sizes, "max_h": max_h}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    n_ingest = args.symbols // 2 if args.ingest is None else args.ingest

    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.data.db import conninfo_for

    with bench_store("kitrade-bench-serve-", sample=("EURUSD",), nhits_use_gpu=False) as bench:
        settings, db = bench.settings, bench.db
        baseline = None
        try:
            syms, last = _make_symbols(db, args.symbols)
            trained = _train(settings, db, ["EURUSD", *syms], args)
            db.close()
            conninfo = conninfo_for(settings)
            if not args.burst_only:
                baseline, bbase, baseline_startup = _start_baseline(trained["artifacts"], conninfo)
            port = free_port()
            k_start = time.monotonic()
            connect(num_cpus=2)
            _start_kitrade(bench.env(), port)
            base = f"http://127.0.0.1:{port}"
            first = f"{base}/api/v1/forecast/EURUSD?horizon=24"
            kitrade_startup = _wait(first, time.monotonic() + 180) - k_start
            if not args.burst_only:
                ingester = Ingester(conninfo, syms[:n_ingest], last)
                paths = _paths(base, bbase, syms, args, ingester)
            burst = _burst_run(base, conninfo, syms, args.burst_rounds)
            rss, rss_parts = _stack_rss_mib()
            serve.shutdown()
            ray.shutdown()
        finally:
            if baseline is not None:
                baseline.terminate()

    figures: dict[str, Any] = {
        "scope": args.scope,
        "model_artifacts": len(set(trained["artifacts"].values())),
        "stack_rss_mib": rss,
        "symbols": args.symbols,
        "kitrade_startup_s": kitrade_startup,
        "train_s": trained["train_s"],
        **burst,
    }
    if not args.burst_only:
        figures.update(_path_figures(paths, n_ingest, ingester.bars))
        figures["baseline_startup_s"] = baseline_startup
        _print(figures, paths["results"], args)
    _print_burst(figures, rss_parts)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _path_figures(paths: dict[str, Any], n_ingest: int, ingested: int) -> dict[str, Any]:
    """The JSON figures of (a)-(e)."""
    results, (sizes, passes) = paths["results"], paths["sizes"]
    a, b, c = results["noop"], results["kitrade"], results["baseline"]
    d, e = results["miss"], results["baseline_miss"]
    return {
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
        "errors": sum(r["errors"] for r in results.values()),
        "kitrade_hit_share": b["hit_share"],
        "baseline_hit_share": c["hit_share"],
        "miss_rps": d["rps"],
        "miss_p50_ms": d["p50_ms"],
        "miss_p99_ms": d["p99_ms"],
        "miss_uncached_p50_ms": d["uncached_p50_ms"],
        "miss_uncached_p99_ms": d["uncached_p99_ms"],
        "miss_hit_share": d["hit_share"],
        "miss_ratio_vs_baseline": d["rps"] / e["rps"] if e["rps"] else float("inf"),
        "baseline_miss_rps": e["rps"],
        "baseline_miss_p50_ms": e["p50_ms"],
        "baseline_miss_p99_ms": e["p99_ms"],
        "baseline_miss_hit_share": e["hit_share"],
        "mean_batch_size": float(np.mean(sizes)) if sizes else 0.0,
        "max_batch_size": max(sizes, default=0),
        "batches": len(sizes),
        "pass_series_mean": float(np.mean(passes)) if passes else 0.0,
        "pass_series_max": max(passes, default=0),
        "passes": len(passes),
        "max_horizon": paths["max_h"],
        "ingested_symbols": n_ingest,
        "ingested_bars": ingested,
    }


def _print_burst(f: dict[str, Any], rss_parts: dict[str, float]) -> None:
    print(
        f"(f) burst, {f['scope']} scope, model artifacts: {f['model_artifacts']}; "
        f"{f['burst_rounds']} rounds of a new bar for each of {f['burst_symbols']} symbols, "
        "then one request per symbol at once"
    )
    print(
        f"    wall p50 {f['burst_p50_ms']:.1f} ms, p99 {f['burst_p99_ms']:.1f} ms; "
        f"requests per @serve.batch {f['burst_batch_size_mean']:.2f} "
        f"(max {f['burst_batch_size_max']}, {f['burst_batches_per_burst']:.1f} batches a burst); "
        f"series per forward pass {f['burst_pass_series_mean']:.2f} "
        f"(max {f['burst_pass_series_max']}), {f['burst_passes_per_burst']:.1f} passes a burst; "
        f"fresh answers {f['burst_fresh_share']:.0%}, errors {f['burst_errors']}"
    )
    print(f"stack resident memory: {f['stack_rss_mib']:.0f} MiB (target < 6144 MiB)")
    for part, mib in rss_parts.items():
        print(f"  {part:<50} {mib:>8.0f} MiB")


def _print(
    f: dict[str, Any], results: dict[str, dict[str, float]], args: argparse.Namespace
) -> None:
    print(f"{'endpoint':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cached':>7} {'errors':>7}")
    for label, key in (
        ("(a) no-op Serve deployment", "noop"),
        ("(b) kitrade forecast, one symbol", "kitrade"),
        ("(c) FastAPI + NeuralForecast.predict", "baseline"),
        ("(d) kitrade, uncached mix", "miss"),
        ("(e) FastAPI + NeuralForecast.predict, mix", "baseline_miss"),
    ):
        r = results[key]
        print(
            f"{label:<44} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['hit_share']:>6.0%} {r['errors']:>7}"
        )
    print(
        f"mix: {f['symbols']} symbols x horizons 1..{f['max_horizon']}, one bar a second for "
        f"{f['ingested_symbols']} of them ({f['ingested_bars']} bars over both runs), "
        f"{args.connections} connections, {args.seconds:g} s each"
    )
    print(
        f"kitrade: 2-CPU Ray cluster, 1 gateway + 1 forecast replica (@serve.batch <= 32), "
        f"start-up {f['kitrade_startup_s']:.1f} s (ray.init to first forecast)"
    )
    print(
        f"baseline: {BASELINE_SHAPE}, "
        f"start-up {f['baseline_startup_s']:.1f} s (launch to first forecast)"
    )
    print(
        f"(d) answers not from a cache: p50 {f['miss_uncached_p50_ms']:.1f} ms, "
        f"p99 {f['miss_uncached_p99_ms']:.1f} ms; @serve.batch formed {f['batches']} batches, "
        f"mean size {f['mean_batch_size']:.2f}, max {f['max_batch_size']}; "
        f"{f['passes']} forward passes, {f['pass_series_mean']:.2f} series each "
        f"(max {f['pass_series_max']})"
    )
    print(f"(b)/(a) req/s: {f['ratio_vs_noop']:.2f}x (target >= 0.9x)")
    print(f"(b)/(c) req/s: {f['ratio_vs_baseline']:.2f}x (target >= 5x)")
    print(f"p99 (b)/(a): {f['p99_ratio_vs_noop']:.2f}x (target <= 1.5x)")
    print(f"(d)/(e) req/s: {f['miss_ratio_vs_baseline']:.2f}x (target >= 3x)")
    print(
        f"p99 (d) {f['miss_p99_ms']:.1f} ms vs p50 (e) {f['baseline_miss_p50_ms']:.1f} ms "
        "(target: (d) p99 <= (e) p50)"
    )


if __name__ == "__main__":
    sys.exit(main())
