"""Benchmark: storing a walk-forward fold's forecasts, against a bare psycopg COPY, in one run.

The speed claim that ``tests/services/test_backtests.py`` used to make with a wall-clock
bound ("a long fold is stored quickly") lives here instead. Starts a throw-away embedded
PostgreSQL with kitrade's schema, builds one fold of ``--decisions`` decision bars times
``--horizon`` steps (the forecast contract's frame) and writes it

1. through ``kitrade.data.backtests.store_forecasts`` (batched ``unnest`` upsert) into
   ``backtest_forecasts``, then once more over the same rows (every row conflicts: the
   rerun path);
2. through bare psycopg ``COPY … FROM STDIN`` (``write_row``) into an identical empty
   table (``LIKE backtest_forecasts INCLUDING ALL``): the baseline.

Both run in this process, one client thread each, one after the other. Prints rows/s
and the ratio kitrade / COPY; ``--json`` writes the figures.

Usage:
    python scripts/bench_forecast_store.py [--decisions 5000] [--horizon 24] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _bench_setup import bench_store

COLUMNS = (
    "fold_key",
    "symbol",
    "issued_at",
    "step",
    "horizon",
    "model_version",
    "trained_through",
    "mean",
    "lo_80",
    "hi_80",
    "lo_95",
    "hi_95",
)


def fold_frame(decisions: int, horizon: int) -> pd.DataFrame:
    """One fold's forecasts: ``decisions`` hourly decision bars, ``horizon`` steps each."""
    issued = pd.date_range("2020-01-01", periods=decisions, freq="h", tz="UTC")
    mean = np.random.default_rng(3).normal(size=decisions * horizon)
    return pd.DataFrame(
        {
            "symbol": "BENCH",
            "issued_at": np.repeat(issued, horizon),
            "step": np.tile(np.arange(1, horizon + 1), decisions),
            "mean": mean,
            "lo_80": mean - 1,
            "hi_80": mean + 1,
            "lo_95": mean - 2,
            "hi_95": mean + 2,
            "model_version": "nhits-wf-bench",
            "trained_through": issued[0] - pd.Timedelta(hours=1),
        }
    )


def _copy(conn: Any, frame: pd.DataFrame, horizon: int) -> float:
    """Seconds to COPY ``frame`` into an empty copy of ``backtest_forecasts``."""
    conn.execute("CREATE TEMP TABLE bare (LIKE backtest_forecasts INCLUDING ALL)")
    rows = zip(
        frame["symbol"].tolist(),
        frame["issued_at"].dt.to_pydatetime().tolist(),
        frame["step"].astype("int64").tolist(),
        frame["model_version"].tolist(),
        frame["trained_through"].dt.to_pydatetime().tolist(),
        *(
            frame[k].astype("float64").tolist()
            for k in ("mean", "lo_80", "hi_80", "lo_95", "hi_95")
        ),
        strict=True,
    )
    t0 = time.perf_counter()
    with conn.cursor().copy(f"COPY bare ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for symbol, issued, step, version, through, *levels in rows:
            copy.write_row(("bench", symbol, issued, step, horizon, version, through, *levels))
    conn.commit()
    return time.perf_counter() - t0


def run(decisions: int, horizon: int) -> dict[str, float]:
    """The figures of one run (rows/s of each path, the ratio)."""
    from kitrade.data.backtests import store_forecasts

    frame = fold_frame(decisions, horizon)
    rows = len(frame)
    with bench_store("kitrade-bench-fstore-", sample=None) as bench, bench.db.connection() as conn:
        times = []
        for _ in range(2):  # first: all new rows; second: all conflicting (a rerun)
            t0 = time.perf_counter()
            written = store_forecasts(conn, fold_key="bench", horizon=horizon, frame=frame)
            conn.commit()
            times.append(time.perf_counter() - t0)
            if written != rows:
                raise RuntimeError(f"store_forecasts: expected {rows} rows, was {written}")
        copy_s = _copy(conn, frame, horizon)
    return {
        "rows": float(rows),
        "kitrade_rows_per_s": rows / times[0],
        "kitrade_rerun_rows_per_s": rows / times[1],
        "copy_rows_per_s": rows / copy_s,
        "ratio": copy_s / times[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--json", type=Path, default=None, help="write figures here")
    args = parser.parse_args(argv)
    res = run(args.decisions, args.horizon)
    print(f"{'path':<46} {'rows/s':>12}")
    print(f"{'kitrade store_forecasts (new rows)':<46} {res['kitrade_rows_per_s']:>12,.0f}")
    print(
        f"{'kitrade store_forecasts (rerun, all conflict)':<46} {res['kitrade_rerun_rows_per_s']:>12,.0f}"
    )
    print(f"{'bare COPY, binary via write_row':<46} {res['copy_rows_per_s']:>12,.0f}")
    print(f"rows: {res['rows']:,.0f}")
    print(f"ratio kitrade / bare COPY: {res['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
