"""Benchmark hook: a walk-forward forecast backtest of the sample symbols.

Folds as parallel Ray tasks against the same folds one after another
(``kitrade.backtest.forecasts.time_walk_forward``). Call
``bench_walkforward(settings, db)`` from a benchmark (the database must hold
the symbols, e.g. after ``sync_symbols(db, SampleSource())``, and Ray must be
connected), or run this file for a self-contained run on a temporary
embedded PostgreSQL and a local Ray cluster::

    python scripts/_bench_walkforward.py --folds 4 --decisions 48 --max-steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _bench_setup import SAMPLE, bench_store

if TYPE_CHECKING:
    from kitrade.backtest.forecasts import FoldJob
    from kitrade.config import Settings
    from kitrade.data.db import Database

#: a tiny NHITS per fold; the point is the scheduling, not the accuracy.
TINY: dict[str, Any] = {"max_steps": 20, "mlp_units": 32, "windows_batch_size": 64}


def walk_forward_jobs(
    db: Database,
    *,
    symbols: tuple[str, ...] = SAMPLE,
    n_folds: int = 4,
    decisions_per_fold: int = 24,
    overrides: dict[str, Any] | None = None,
) -> list[FoldJob]:
    """One job per (symbol, fold) over each symbol's last ``n_folds * decisions_per_fold`` bars.

    A symbol too short for that period uses as many bars as its training floor leaves.
    """
    from kitrade.backtest.folds import walk_forward_folds
    from kitrade.backtest.forecasts import FoldJob
    from kitrade.data.bars import get_bars
    from kitrade.data.symbols import get_symbol
    from kitrade.training.spec import min_bars

    jobs = []
    with db.connection() as conn:
        for s in symbols:
            timeframe = get_symbol(conn, symbol=s).timeframe
            bars = get_bars(conn, symbol=s).set_index("ts")
            period = min(n_folds * decisions_per_fold, len(bars))
            config, _ = walk_forward_folds(
                bars, timeframe=timeframe, n_folds=1, symbol=s, **(overrides or TINY)
            )
            first = max(len(bars) - period, min_bars(config, evaluate=False))
            config, folds = walk_forward_folds(
                bars,
                timeframe=timeframe,
                n_folds=n_folds,
                start=bars.index[first],
                symbol=s,
                **(overrides or TINY),
            )
            jobs += [FoldJob(s, f, config, bars) for f in folds]
    return jobs


def bench_walkforward(
    settings: Settings,
    db: Database,
    *,
    symbols: tuple[str, ...] = SAMPLE,
    n_folds: int = 4,
    decisions_per_fold: int = 24,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Wall times of the sample symbols' folds as parallel Ray tasks and one after another.

    Returns:
        ``time_walk_forward``'s dict (``parallel_s``, ``sequential_s``, ``speedup``,
        ``folds``, ``resources``, ``identical``) plus ``decisions``.
    """
    from kitrade.backtest.forecasts import time_walk_forward

    jobs = walk_forward_jobs(
        db,
        symbols=symbols,
        n_folds=n_folds,
        decisions_per_fold=decisions_per_fold,
        overrides=overrides,
    )
    out = time_walk_forward(settings, jobs)
    out["decisions"] = sum(j.fold.n_decisions for j in jobs)
    return out


def run_self_contained(
    *,
    n_folds: int = 4,
    decisions_per_fold: int = 24,
    max_steps: int = TINY["max_steps"],
    cpus: int | None = None,
) -> dict[str, Any]:
    """``bench_walkforward`` on a temporary embedded PostgreSQL holding the sample symbols,
    with a local Ray cluster of ``cpus`` CPUs (default: all); both are stopped afterwards."""
    import ray

    from kitrade.cluster import connect

    with bench_store("kitrade-bench-wf-") as bench:
        try:
            connect(num_cpus=cpus)
            return bench_walkforward(
                bench.settings,
                bench.db,
                n_folds=n_folds,
                decisions_per_fold=decisions_per_fold,
                overrides=TINY | {"max_steps": max_steps},
            )
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Self-contained run: temporary database, sample symbols, local Ray cluster."""
    parser = argparse.ArgumentParser(description="walk-forward folds: parallel vs sequential")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--decisions", type=int, default=24, help="decision bars per fold")
    parser.add_argument("--max-steps", type=int, default=TINY["max_steps"])
    parser.add_argument("--cpus", type=int, default=None, help="local cluster CPUs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run_self_contained(
        n_folds=args.folds,
        decisions_per_fold=args.decisions,
        max_steps=args.max_steps,
        cpus=args.cpus,
    )
    print(
        f"{result['folds']} folds ({result['decisions']} decision bars) of {result['symbols']}: "
        f"parallel {result['parallel_s']:.1f} s, one after another {result['sequential_s']:.1f} s, "
        f"speed-up x{result['speedup']:.2f}, resources per task {result['resources']}, "
        f"identical forecasts: {result['identical']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
