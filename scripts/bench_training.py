"""Benchmark: kitrade's ``train_all`` on Ray against the old system's sequential fits.

Eight symbols: the three bundled samples (EURUSD H1, GOOG D1, BTCUSD MN1) and
five synthetic hourly series. Both sides use the same per-timeframe NHITS
configuration and the same training-plus-rolling-origin evaluation
(``nhits.fit_and_evaluate``), so the accuracy columns compare like with like:

- **kitrade**: ``train_all(force=True)`` on a fresh local Ray cluster — one
  task per symbol, as many at once as the CPUs allow, each registered and
  gated. Timed from the call (worker start-up and imports included). A
  second, warm run (workers already up, as on a long-running platform) is
  reported too.
- **baseline**: a fresh Python process that imports neuralforecast and fits
  each symbol one after another, as the old NHITS service did. Timed from
  process start.

Prints wall times, their ratio and each symbol's relative MAE against naive (rMAE).

Usage:
    python scripts/bench_training.py [--max-steps N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SYNTHETIC = 5
SYN_BARS = 2000


def synthetic(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(100 + i)
    t = np.arange(SYN_BARS)
    close = 100 + 2 * np.sin(2 * np.pi * t / 24 + i) + np.cumsum(rng.normal(0, 0.2, SYN_BARS))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2023-01-02", periods=SYN_BARS, freq="h", tz="UTC"),
            "open": close,
            "high": close + 0.3,
            "low": close - 0.3,
            "close": close,
            "volume": 1.0,
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASELINE = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from kitrade.training.evaluation import fit_and_evaluate
from kitrade.training.spec import default_config
jobs = json.loads(sys.argv[1])
out, sec = {}, {}
for job in jobs:
    frame = pd.read_parquet(job["path"])
    cfg = default_config(job["timeframe"], len(frame), **job["overrides"])
    t1 = time.perf_counter()
    _, report = fit_and_evaluate(frame, cfg)
    sec[job["symbol"]] = time.perf_counter() - t1
    out[job["symbol"]] = report.model.rmae
print(json.dumps({"seconds": time.perf_counter() - t0, "rmae": out, "sec": sec}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap NHITS steps (default: per timeframe)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import psycopg
    import ray

    from kitrade.cluster import connect
    from kitrade.config import Settings
    from kitrade.data.bars import get_bars, ingest_bars, to_training_frame
    from kitrade.data.embedded import EmbeddedPostgres
    from kitrade.data.sources.sample import SampleSource
    from kitrade.data.store import open_store
    from kitrade.data.symbols import create_symbol, get_symbol
    from kitrade.data.sync import sync_symbols
    from kitrade.schemas import SymbolIn
    from kitrade.training.runs import train_all

    overrides = {"max_steps": args.max_steps} if args.max_steps else {}
    with tempfile.TemporaryDirectory(prefix="kitrade-bench-train-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", _free_port())
        server.start()
        try:
            settings = Settings(
                data_dir=Path(tmp),
                timescale_host="127.0.0.1",
                timescale_port=server.port,
                timescale_db="bench",
                nhits_use_gpu=False,
                _env_file=None,
            )
            db = open_store(settings, start=False)
            sync_symbols(db, SampleSource())
            with db.connection() as conn:
                for i in range(SYNTHETIC):
                    create_symbol(conn, spec=SymbolIn(symbol=f"SYN{i}", timeframe="H1"))
                conn.commit()
                for i in range(SYNTHETIC):
                    ingest_bars(conn, symbol=f"SYN{i}", bars=synthetic(i))
            symbols = ["EURUSD", "GOOG", "BTCUSD"] + [f"SYN{i}" for i in range(SYNTHETIC)]
            jobs = []
            with psycopg.connect(server.uri.rsplit("/", 1)[0] + "/bench") as conn:
                for s in symbols:
                    frame = to_training_frame(s, get_bars(conn, symbol=s))
                    path = Path(tmp) / f"{s}.parquet"
                    frame.to_parquet(path)
                    jobs.append(
                        {
                            "symbol": s,
                            "timeframe": get_symbol(conn, symbol=s).timeframe,
                            "path": str(path),
                            "overrides": overrides,
                        }
                    )
            db.close()

            # baseline: sequential fits in a fresh process
            proc = subprocess.run(
                [sys.executable, "-c", BASELINE, json.dumps(jobs)],
                capture_output=True,
                text=True,
                check=True,
            )
            base = json.loads(proc.stdout.strip().splitlines()[-1])

            # kitrade: train_all on a fresh local cluster
            connect(num_cpus=2)
            t0 = time.perf_counter()
            cold = train_all(settings, symbols, force=True, overrides=overrides or None)
            kitrade_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            warm = train_all(settings, symbols, force=True, overrides=overrides or None)
            warm_s = time.perf_counter() - t0
            ray.shutdown()
        finally:
            server.stop(mode="immediate")

    failed = [r.symbol for r in cold.results if r.status != "done"]
    if failed:
        print(f"kitrade failed for {failed}: {[r.error for r in cold.results if r.error]}")
        return 1
    k_rmae = {r.symbol: r.metrics["model"]["rmae"] for r in cold.results}
    beats = {r.symbol: bool(r.metrics.get("beats_naive")) for r in cold.results}
    k_sec = {r.symbol: r.seconds for r in warm.results}
    print(
        f"{'symbol':<8} {'kitrade rMAE':>13} {'baseline rMAE':>14} {'beats naive':>12} "
        f"{'task s (warm)':>14} {'baseline s':>11}"
    )
    for s in symbols:
        print(
            f"{s:<8} {k_rmae[s]:>13.3f} {base['rmae'][s]:>14.3f} "
            f"{'yes' if beats[s] else 'no':>12} {k_sec[s]:>14.1f} {base['sec'][s]:>11.1f}"
        )
    figures = {
        "kitrade_s": kitrade_s,
        "baseline_s": base["seconds"],
        "speedup": base["seconds"] / kitrade_s,
        "kitrade_mean_rmae": float(np.mean(list(k_rmae.values()))),
        "baseline_mean_rmae": float(np.mean(list(base["rmae"].values()))),
        "kitrade_warm_s": warm_s,
        "speedup_warm": base["seconds"] / warm_s,
        "warm_mean_rmae": float(np.mean([r.metrics["model"]["rmae"] for r in warm.results])),
    }
    print(f"baseline (sequential NeuralForecast fits): {figures['baseline_s']:.1f} s")
    print(
        f"kitrade train_all, cold cluster:           {figures['kitrade_s']:.1f} s  "
        f"speedup {figures['speedup']:.2f}x (target >= 1.8x)"
    )
    print(
        f"kitrade train_all, warm workers:           {figures['kitrade_warm_s']:.1f} s  "
        f"speedup {figures['speedup_warm']:.2f}x"
    )
    print(
        f"mean rMAE vs naive: kitrade {figures['kitrade_mean_rmae']:.3f}, "
        f"baseline {figures['baseline_mean_rmae']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
