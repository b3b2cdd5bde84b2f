"""Benchmark: kitrade's ``train_all`` (per-symbol and shared) against the old sequential fits.

Sixteen hourly series (``--symbols``), all H1 so that they form one shared
group: the bundled EURUSD sample (5,000 real bars, 2017-04 to 2018-02) and
fifteen series derived from it. Each derived series keeps EURUSD's timestamps
(its weekend gaps too) and is rebuilt from EURUSD's own hourly log returns,
drawn in day-long blocks (24 bars) that start at the same hour of day, scaled
by a volatility factor between 0.5 and 2 and re-based to a price level of its
own; open is the previous close, high and low keep the source bar's range.
So they have what FX bars have (fat tails, an intraday volatility pattern,
clustering within a day) without being copies of one another. Blocks for a
series' evaluation tail come only from EURUSD's tail, blocks for the rest
only from the bars before it: no model trains on returns that any series is
evaluated on. Being one market's returns, they may suit a shared model more
than sixteen unrelated markets would; read the accuracy figures with that in mind.

Three sides train the identical NHITS configuration (the shared group's, from
``kitrade.training.groups.plan_groups``, so every side is evaluated on the same
rolling origins) with the same ``--max-steps`` when given:

- **old way**: a fresh Python process fits the symbols one after another with
  ``fit_and_evaluate`` (one ``NeuralForecast.fit`` per symbol), as the old NHITS
  service did, torch at its default threads (printed). Timed from process start.
  The same process then measures the thread gain: a subset of the symbols
  (``--gain-symbols``) fitted with 1 thread and with the default, twice,
  alternating. Ideal parallel speed-up = cores / gain.
- **kitrade per-symbol**: ``train_all(scope="symbol")`` on a fresh local Ray
  cluster of ``--cpus`` CPUs: one task of 1 CPU (torch 1 thread) per symbol,
  as many at once as there are CPUs. Cold (timed from the call: workers start
  and import torch) and warm (workers already up, as on a running platform).
- **kitrade shared**: ``train_all(scope="shared")`` on another fresh cluster:
  one task of ``KITRADE_TRAIN_GROUP_CPUS`` CPUs (torch as many threads; at most
  the cluster's) fits one model on every series, ``SHARED_BATCH_SIZE`` series
  per step (its resources printed), then
  evaluates it on each; cold and warm again.

Cluster start-up (``connect``) is timed separately and left out of both kitrade
sides, as a running platform pays it once. Every kitrade run registers and
gates its versions, as a user's run does. ``shared_s`` and
``per_symbol_efficiency`` use the cold runs (the old way pays its imports
too); the warm figures are printed and written as ``*_warm``.

Prints wall times, ratios, each symbol's rMAE (MAE relative to naive) on each
side, and whether each target is met.

Usage:
    python scripts/bench_training.py [--symbols 16] [--max-steps N] [--cv-windows N]
        [--gain-symbols 4] [--cpus N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _bench_setup import bench_store

TIMEFRAME = "H1"
BLOCK = 24  # bars per drawn block: one day of hourly bars
MIN_SYMBOLS = 2  # a shared group needs two series; the targets are for 16 or more

OLD_WAY = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
import torch
from kitrade.training.evaluation import fit_and_evaluate
from kitrade.training.spec import default_config
spec = json.loads(sys.argv[1])
threads = torch.get_num_threads()
frames = {j["symbol"]: pd.read_parquet(j["path"]) for j in spec["jobs"]}

def fit(symbol):
    frame = frames[symbol]
    cfg = default_config(spec["timeframe"], len(frame), **spec["config"])
    t1 = time.perf_counter()
    _, report = fit_and_evaluate(frame, cfg)
    return time.perf_counter() - t1, report.model.rmae

sec, rmae = {}, {}
for s in frames:
    sec[s], rmae[s] = fit(s)
seconds = time.perf_counter() - t0
gain = {1: 0.0, threads: 0.0}
for _ in range(2):
    for n in (1, threads):
        torch.set_num_threads(n)
        for s in spec["gain_symbols"]:
            gain[n] += fit(s)[0]
print(json.dumps({"seconds": seconds, "sec": sec, "rmae": rmae, "threads": threads,
                  "one_thread_s": gain[1], "default_threads_s": gain[threads]}))
"""


def derived_bars(src: pd.DataFrame, i: int, tail: int) -> pd.DataFrame:
    """Series ``i`` derived from ``src``'s bars (see the module docstring).

    Args:
        src: the source bars (``ts, open, high, low, close, volume``), hourly.
        i: the series' number (its random seed).
        tail: bars of the evaluation tail; its blocks come only from ``src``'s tail.
    """
    rng = np.random.default_rng(1000 + i)
    op, hp, lp, cp = (src[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    ret = np.diff(np.log(cp), prepend=np.log(cp[0]))  # ret[0] = 0
    up = np.log(hp / np.maximum(op, cp)).clip(min=0)
    down = np.log(np.minimum(op, cp) / lp).clip(min=0)
    hours = pd.DatetimeIndex(src["ts"]).hour.to_numpy()
    n = len(src)
    pick = np.zeros(n, dtype=int)
    for lo, hi in ((1, n - tail), (n - tail, n)):
        t = lo
        while t < hi:
            k = min(BLOCK, hi - t)
            starts = lo + np.flatnonzero(hours[lo : hi - k + 1] == hours[t])
            s = int(rng.choice(starts)) if len(starts) else int(rng.integers(lo, hi - k + 1))
            pick[t : t + k] = np.arange(s, s + k)
            t += k
    vol = 0.5 * 4 ** rng.random()
    close = 10 ** rng.uniform(-0.5, 2.5) * np.exp(np.cumsum(vol * ret[pick]))
    opn = np.concatenate([close[:1], close[:-1]])
    return pd.DataFrame(
        {
            "ts": src["ts"].to_numpy(),
            "open": opn,
            "high": np.maximum(opn, close) * np.exp(vol * up[pick]),
            "low": np.minimum(opn, close) * np.exp(-vol * down[pick]),
            "close": close,
            "volume": src["volume"].to_numpy(dtype="float64")[pick],
        }
    )


def make_series(bench: Any, n: int, overrides: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """EURUSD (synced by ``bench_store``) and ``n - 1`` derived series, stored; training frames."""
    from kitrade.data.bars import get_bars, ingest_bars, to_training_frame
    from kitrade.data.symbols import create_symbol
    from kitrade.schemas import SymbolIn
    from kitrade.training.tasks import training_config

    with bench.db.connection() as conn:
        src = get_bars(conn, symbol="EURUSD")
        tail = training_config(bench.settings, TIMEFRAME, len(src), overrides).test_size
        bars = {"EURUSD": src} | {f"EURX{i:02d}": derived_bars(src, i, tail) for i in range(1, n)}
        for name in list(bars)[1:]:
            desc = "derived from EURUSD H1: day blocks of its returns, rescaled (bench)"
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe=TIMEFRAME, description=desc))
        conn.commit()
        for name, b in list(bars.items())[1:]:
            ingest_bars(conn, symbol=name, bars=b)
        return {s: to_training_frame(s, get_bars(conn, symbol=s)) for s in bars}


def run_old_way(
    frames: dict[str, pd.DataFrame], config: dict[str, Any], gain_symbols: int, tmp: Path
) -> dict[str, Any]:
    """The old way in a fresh process: sequential fits, then the thread-gain measurement."""
    jobs = []
    for s, f in frames.items():
        path = tmp / f"{s}.parquet"
        f.to_parquet(path)
        jobs.append({"symbol": s, "path": str(path)})
    spec = {
        "jobs": jobs,
        "timeframe": TIMEFRAME,
        "config": config,
        "gain_symbols": list(frames)[:gain_symbols],
    }
    proc = subprocess.run(
        [sys.executable, "-c", OLD_WAY, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the old way failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_kitrade(
    settings: Any, symbols: list[str], config: dict[str, Any], scope: str, cpus: int
) -> dict[str, Any]:
    """``train_all(scope=...)`` on a fresh local cluster, cold then warm; the cluster stops after."""
    import ray

    from kitrade.cluster import connect
    from kitrade.training.runs import train_all

    t0 = time.perf_counter()
    connect(num_cpus=cpus)
    out: dict[str, Any] = {"connect_s": time.perf_counter() - t0}
    try:
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            report = train_all(settings, symbols, force=True, overrides=config, scope=scope)
            out[f"{run}_s"] = time.perf_counter() - t0
            failed = {r.symbol: r.error for r in report.results if r.status != "done"}
            if failed:
                raise SystemExit(f"kitrade {scope} ({run}) failed: {failed}")
            wrong = [r.symbol for r in report.results if (r.scope or "symbol") != scope]
            if wrong:
                raise SystemExit(f"kitrade {scope} ({run}): {wrong} trained another scope")
            out[f"{run}_rmae"] = {r.symbol: _rmae(r.metrics) for r in report.results}
            out[f"{run}_task_s"] = {r.symbol: r.seconds for r in report.results}
    finally:
        ray.shutdown()
    return out


def _rmae(metrics: dict[str, Any] | None) -> float:
    value = ((metrics or {}).get("model") or {}).get("rmae")
    return math.nan if value is None else float(value)


def _mean(values: dict[str, float]) -> float:
    return float(np.mean([values[s] for s in values]))


def figures_of(
    old: dict[str, Any], per: dict[str, Any], shared: dict[str, Any], cores: int
) -> dict[str, Any]:
    """The JSON figures: the issue's keys, the earlier ones, and what they are made of."""
    old_s = old["seconds"]
    gain = old["one_thread_s"] / old["default_threads_s"]
    ideal = cores / gain
    f: dict[str, Any] = {
        "shared_s": shared["cold_s"],
        "shared_speedup": old_s / shared["cold_s"],
        "shared_mean_rmae": _mean(shared["cold_rmae"]),
        "per_symbol_mean_rmae": _mean(per["cold_rmae"]),
        "per_symbol_efficiency": old_s / per["cold_s"] / ideal,
        "per_symbol_efficiency_warm": old_s / per["warm_s"] / ideal,
        "shared_warm_s": shared["warm_s"],
        "shared_speedup_warm": old_s / shared["warm_s"],
        "shared_rmae_change_pct": 100 * (_mean(shared["cold_rmae"]) / _mean(per["cold_rmae"]) - 1),
        "thread_gain": gain,
        "gain_one_thread_s": old["one_thread_s"],
        "gain_default_threads_s": old["default_threads_s"],
        "baseline_fits_s": sum(old["sec"].values()),
        "ideal_speedup": ideal,
        "cores": cores,
        "baseline_threads": old["threads"],
        "connect_s": per["connect_s"],
        "shared_connect_s": shared["connect_s"],
        # the earlier keys: kitrade = per-symbol train_all, baseline = the old way
        "kitrade_s": per["cold_s"],
        "baseline_s": old_s,
        "speedup": old_s / per["cold_s"],
        "kitrade_mean_rmae": _mean(per["cold_rmae"]),
        "baseline_mean_rmae": _mean(old["rmae"]),
        "kitrade_warm_s": per["warm_s"],
        "speedup_warm": old_s / per["warm_s"],
        "warm_mean_rmae": _mean(per["warm_rmae"]),
        "symbols": len(old["rmae"]),
    }
    return f


def print_report(
    old: dict[str, Any], per: dict[str, Any], shared: dict[str, Any], f: dict[str, Any], how: str
) -> None:
    """The per-symbol table, the sides' wall times and ratios, and the targets."""
    print(how)
    print(
        f"{'symbol':<8} {'old rMAE':>9} {'per-symbol':>11} {'shared':>9} "
        f"{'old fit s':>10} {'task s (cold)':>14}"
    )
    for s in old["rmae"]:
        print(
            f"{s:<8} {_num(old['rmae'][s]):>9.3f} {per['cold_rmae'][s]:>11.3f} "
            f"{shared['cold_rmae'][s]:>9.3f} {old['sec'][s]:>10.1f} {per['cold_task_s'][s]:>14.1f}"
        )
    print(
        f"{'mean':<8} {f['baseline_mean_rmae']:>9.3f} {f['per_symbol_mean_rmae']:>11.3f} "
        f"{f['shared_mean_rmae']:>9.3f}"
    )
    n = old["threads"]
    print(
        f"old way (sequential fits, torch {n} threads):    {f['baseline_s']:>7.1f} s"
        f"   [from process start]"
    )
    print(
        f"kitrade per-symbol, cold / warm:               {f['kitrade_s']:>7.1f} / "
        f"{f['kitrade_warm_s']:.1f} s   speed-up {f['speedup']:.2f}x / {f['speedup_warm']:.2f}x"
    )
    print(
        f"kitrade shared, cold / warm:                   {f['shared_s']:>7.1f} / "
        f"{f['shared_warm_s']:.1f} s   speed-up {f['shared_speedup']:.2f}x / "
        f"{f['shared_speedup_warm']:.2f}x"
    )
    print(
        f"cluster start-up (not in the kitrade figures): {f['connect_s']:.1f} s, "
        f"{f['shared_connect_s']:.1f} s"
    )
    print(
        f"thread gain {n} vs 1 thread: {f['thread_gain']:.2f}x  ideal parallel speed-up "
        f"{f['cores']} cores / gain = {f['ideal_speedup']:.2f}x"
    )
    _targets(f)


def _targets(f: dict[str, Any]) -> None:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ok = f["shared_speedup"] >= 4
    print(f"shared speed-up {f['shared_speedup']:.2f}x (target >= 4x): {met(ok)}")
    ok = f["shared_rmae_change_pct"] <= 2
    print(
        f"shared mean rMAE {f['shared_mean_rmae']:.4f} vs per-symbol "
        f"{f['per_symbol_mean_rmae']:.4f}: {f['shared_rmae_change_pct']:+.2f} % "
        f"(target <= +2 %): {met(ok)}"
    )
    ok = f["per_symbol_efficiency"] >= 0.9
    print(
        f"per-symbol efficiency, cold {f['per_symbol_efficiency']:.2f} "
        f"(warm {f['per_symbol_efficiency_warm']:.2f}) of the ideal (target >= 0.9): {met(ok)}"
    )


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=16, help="H1 series (default 16)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap NHITS steps")
    parser.add_argument("--cv-windows", type=int, default=None, help="evaluation origins")
    parser.add_argument("--gain-symbols", type=int, default=4, help="fits of the thread gain")
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.symbols < MIN_SYMBOLS:
        parser.error(f"--symbols: expected {MIN_SYMBOLS} or more, was {args.symbols}")

    from kitrade.training.groups import plan_groups
    from kitrade.training.tasks import task_resources

    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.cv_windows:
        overrides["cv_windows"] = args.cv_windows
    with bench_store("kitrade-bench-train-", sample=("EURUSD",), nhits_use_gpu=False) as bench:
        frames = make_series(bench, args.symbols, overrides)
        symbols = list(frames)
        groups, configs = plan_groups(bench.settings, symbols, overrides)
        if groups != {TIMEFRAME: symbols}:
            raise SystemExit(f"expected one {TIMEFRAME} group of {symbols}, was {groups}")
        config = configs[TIMEFRAME]
        bench.db.close()
        old = run_old_way(frames, config, min(args.gain_symbols, len(symbols)), bench.tmp)
        per = run_kitrade(bench.settings, symbols, config, "symbol", args.cpus)
        shared = run_kitrade(bench.settings, symbols, config, "shared", args.cpus)
        resources = task_resources(bench.settings)
        group_cpus = max(1, min(bench.settings.train_group_cpus, args.cpus))
    f = figures_of(old, per, shared, args.cpus)
    f["max_steps"] = config["max_steps"]
    f["shared_task_cpus"] = group_cpus
    f["shared_batch_size"] = config["batch_size"]
    f["cv_windows"] = config["cv_windows"]
    how = (
        f"{len(symbols)} {TIMEFRAME} series, {len(frames['EURUSD'])} bars each; NHITS max_steps "
        f"{config['max_steps']}, {config['cv_windows']} evaluation origins, same config on every "
        f"side; kitrade per-symbol tasks {resources} each (torch 1 thread), the shared group's "
        f"task {group_cpus} CPUs (torch {group_cpus} threads, {config['batch_size']} series per "
        f"step), {args.cpus} CPUs; thread gain over {min(args.gain_symbols, len(symbols))} "
        "symbols x 2 rounds"
    )
    print_report(old, per, shared, f, how)
    if args.json:
        args.json.write_text(json.dumps(f, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
