"""Benchmark: kitrade's backtest engine against vectorbt and backtesting.py, in one run.

Parts:
  (a) the same target-weight orders (3 real sample symbols from ``backtesting``: EURUSD H1,
      GOOG D1, BTCUSD MN1 on the union of their timestamps, one shared cash account; 1,000
      ``forecast_threshold`` parameter sets over precomputed forecasts) through kitrade's
      engine (``simulate``, the sets as a numpy axis) and through vectorbt's
      ``Portfolio.from_orders`` (target percent, cash sharing, one group per set, next-open
      prices, same fees and slippage) — the time ratio (vectorbt / kitrade) and the largest
      relative equity difference. The forecasts are SYNTHETIC point-in-time ones
      (``drift_forecasts``: mean and sd of the last 20 log returns at each bar), not a model's.
      Both sides get the same precomputed orders and their input arrays prepared outside the
      timers (kitrade's aligned bars; vectorbt's per-column tiles of them); vectorbt's
      order-record buffer is sized to the orders sent (``max_orders``). Each is run once
      untimed first (vectorbt's numba JIT compiles then, and its on-disk cache is warm), then
      timed as the best of ``--repeat`` runs. All BLAS/numba/OpenMP pools are pinned to one
      thread, so both sides run single-threaded. Both return the (bars x sets) equity as a
      pandas frame, with the same costs (commission, and spread/2 + slippage per fill as the
      slippage); vectorbt also writes its order records (it cannot skip them) and rebuilds the
      equity from them in ``value()`` (its simulation alone is reported beside:
      ``vectorbt_from_orders_s``), kitrade's batch path keeps no records.
  (b) the first ``--bt-sets`` sets on GOOG alone through backtesting.py (``Backtest.run``
      per set, one after another in this process: no process pool, no best-parameter rerun;
      ``FractionalBacktest`` so it fills fractional units like kitrade; the same commission
      and round-trip price cost) and through kitrade's engine: the time ratio over the same
      sets (``ratio_vs_backtesting_py``) and the equity curves compared
      (``equity_max_rel_diff_backtesting_py``; see ``part_b`` for what differs).
  (c) walk-forward point-in-time forecasts (``scripts/_bench_walkforward.py``): on its own
      temporary embedded PostgreSQL holding the sample symbols and a local Ray cluster,
      ``--wf-folds`` folds per symbol of ``--wf-decisions`` decision bars each, a tiny NHITS
      (``--wf-max-steps``) per fold, run as parallel Ray tasks (``walkforward_s``) and the
      same folds one after another (``walkforward_sequential_s``), workers warmed first for
      both. ``--skip-walkforward`` leaves it out. Unlike (a), (b) and (d) it is not pinned to
      one thread: each fold is a Ray task with the configured task resources.
  (d) truncation: 20 random cut points; the backtest (and the strategy's weights) on the bars
      up to the cut must equal the full run's values up to it; prints the count of values
      that differ (``lookahead_violations``, target 0).

Usage:
    python scripts/bench_backtest.py [--sets 1000] [--bt-sets 40] [--repeat 2] [--json PATH]
        [--wf-folds 4] [--wf-decisions 24] [--wf-max-steps 20] [--skip-walkforward]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba load: both sides single-threaded
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bars

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from backtesting import Strategy  # noqa: E402

from kitrade.backtest.engine import (  # noqa: E402
    Costs,
    align_bars,
    orders_from_weights,
    run_backtest,
    scale_gross,
    simulate,
)
from kitrade.backtest.strategies import (  # noqa: E402
    ForecastThreshold,
    drift_forecasts,
    forecast_threshold_array,
    target_weights,
)

COSTS = Costs(commission=0.0005, fixed=0.0, spread={"*": 0.0002}, slippage={"*": 0.0001})
INIT_CASH = 100_000.0


def sample_bars(symbols: tuple[str, ...] = ("EURUSD", "GOOG", "BTCUSD")) -> dict[str, pd.DataFrame]:
    """The ``backtesting`` sample bars as kitrade's bar frames (UTC index, lower-case columns)."""
    import backtesting.test as bt

    out = {}
    for symbol in symbols:
        frame = getattr(bt, symbol).rename(columns=str.lower)
        frame.index = pd.DatetimeIndex(frame.index).tz_localize("UTC")
        out[symbol] = frame[["open", "high", "low", "close", "volume"]].astype(float)
    return out


def param_grid(n: int) -> list[ForecastThreshold]:
    """``n`` forecast_threshold sets: horizon x enter x exit x hold_bars (cycled)."""
    grid = itertools.product(
        (1, 2, 3, 4, 5),
        np.round(np.geomspace(0.0002, 0.05, 20), 6),
        (0.0, 0.5),
        (0, 2, 5, 10, 20),
    )
    sets = [
        ForecastThreshold(
            horizon=h, enter=float(e), exit=float(e) * x, hold_bars=hb, allow_short=True
        )
        for h, e, x, hb in grid
    ]
    return [sets[k % len(sets)] for k in range(n)]


def _best(fn: Callable[[], Any], warm: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` timed runs of ``fn`` after one untimed ``warm`` (a small slice:
    compiles vectorbt's numba kernels, loads its on-disk cache; a no-op cost for numpy)."""
    warm()
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        took = time.perf_counter() - start
        if took < best:
            best, out = took, result  # the best run's output (and its inner timings)
    return best, out


def _kitrade_equity(sim: Any, orders: np.ndarray) -> pd.DataFrame:
    """kitrade's engine on prepared arrays: the (bars x sets) equity as a frame."""
    slip = np.array([COSTS.slip(s) for s in sim.symbols])
    equity, _, _ = simulate(
        sim,
        orders,
        commission=COSTS.commission,
        fixed=COSTS.fixed,
        slip=slip,
        init_cash=INIT_CASH,
        record_fills=False,
    )
    return pd.DataFrame(equity, index=sim.index)


def _vectorbt_inputs(sim: Any, orders: np.ndarray) -> dict[str, Any]:
    """vectorbt's arrays for the same orders, built before its timer (as kitrade's are):
    one column per (set, symbol), one cash-sharing group per set, and an order-record buffer
    sized to the orders sent (``max_orders``) instead of one record per (bar, column)."""
    n_t, n_p, n_s = orders.shape
    return {
        "close": np.tile(sim.close, n_p),
        "size": orders.reshape(n_t, n_p * n_s),
        "price": np.tile(sim.open, n_p),
        "val_price": np.tile(sim.val_price, n_p),
        "group_by": np.repeat(np.arange(n_p), n_s),
        "max_orders": max(int((~np.isnan(orders)).sum()), 1),
    }


def _vectorbt_equity(inputs: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """vectorbt's ``Portfolio.from_orders`` on prepared arrays, same costs: the equity frame
    (``value()``, which vectorbt rebuilds from the order records), and the seconds the
    simulation alone took."""
    import vectorbt as vbt

    start = time.perf_counter()
    pf = vbt.Portfolio.from_orders(
        **inputs,
        size_type="targetpercent",
        fees=COSTS.commission,
        fixed_fees=COSTS.fixed,
        slippage=COSTS.slip("*"),
        init_cash=INIT_CASH,
        cash_sharing=True,
        call_seq="auto",
    )
    simulated = time.perf_counter() - start
    return pf.value(), simulated


def part_a(
    bars: dict[str, pd.DataFrame],
    forecasts: pd.DataFrame,
    sets: list[ForecastThreshold],
    repeat: int,
) -> dict[str, Any]:
    """kitrade vs vectorbt on the same orders, inputs prepared outside both timers."""
    sim = align_bars(bars)
    t0 = time.perf_counter()
    weights = forecast_threshold_array(sets, bars, forecasts)
    t_weights = time.perf_counter() - t0
    t0 = time.perf_counter()
    orders = orders_from_weights(scale_gross(weights, 1.0), sim.has_bar)
    t_orders = time.perf_counter() - t0
    small = orders[:, :2]
    t_kit, eq_kit = _best(
        lambda: _kitrade_equity(sim, orders), lambda: _kitrade_equity(sim, small), repeat
    )
    t0 = time.perf_counter()
    inputs, small_inputs = _vectorbt_inputs(sim, orders), _vectorbt_inputs(sim, small)
    t_vbt_inputs = time.perf_counter() - t0
    t_vbt, (eq_vbt, t_vbt_sim) = _best(
        lambda: _vectorbt_equity(inputs), lambda: _vectorbt_equity(small_inputs), repeat
    )
    kit, vbt_ = eq_kit.to_numpy(), np.asarray(eq_vbt)
    rel = np.abs(kit - vbt_) / np.abs(vbt_)
    return {
        "bars": len(sim.index),
        "symbols": len(sim.symbols),
        "sets": len(sets),
        "orders": int((~np.isnan(orders)).sum()),
        "weights_s": t_weights,
        "orders_s": t_orders,
        "vectorbt_inputs_s": t_vbt_inputs,
        "kitrade_s": t_kit,
        "vectorbt_s": t_vbt,
        "vectorbt_from_orders_s": t_vbt_sim,
        "engine_ratio_vs_vectorbt": t_vbt / t_kit,
        "equity_max_rel_diff": float(np.nanmax(rel)),
    }


#: The weights of part (b), read by ``FollowWeights``.
_BT_WEIGHTS: list[np.ndarray] = []


class FollowWeights(Strategy):
    """backtesting.py strategy: trade to set ``k``'s precomputed weight when it changes."""

    k = 0

    def init(self) -> None:
        self.w, self.last = _BT_WEIGHTS[0][:, self.k], 0.0

    def next(self) -> None:
        w = self.w[len(self.data) - 1]
        if w == self.last:
            return
        self.last = w
        if w > 0:
            self.buy(size=min(w, _BT_MAX_FRACTION))  # exclusive_orders: closes a short first
        elif w < 0:
            self.sell(size=min(-w, _BT_MAX_FRACTION))
        else:
            self.position.close()


#: backtesting.py reads a size below 1 as a fraction of the margin available (1 = 1 unit).
_BT_MAX_FRACTION = 1 - 1e-9
#: ``FractionalBacktest``'s trading unit on GOOG: a millionth of a share, so its whole-unit
#: rounding is far below the costs (kitrade fills fractional units).
_BT_UNIT = 1e-6


def part_b(
    bars: dict[str, pd.DataFrame],
    forecasts: pd.DataFrame,
    sets: list[ForecastThreshold],
    n_bt: int,
    repeat: int,
) -> dict[str, Any]:
    """backtesting.py and kitrade on the same GOOG sets, one process, one thread each.

    Equal work: both get the same precomputed weights of the first ``n_bt`` sets and the same
    costs: the commission, and the same round-trip price cost. kitrade charges each fill the
    adverse fraction ``slip = spread/2 + slippage``; backtesting.py charges its ``spread``
    on a trade's entry only (exits fill at the raw price), so it gets ``2 * slip``.
    backtesting.py fills fractional units (``FractionalBacktest``) and runs the sets one
    after another in this process (``Backtest.run`` per set: no process pool, no extra
    best-parameter run), open trades marked to market at the end as kitrade does. Both return
    each set's equity curve, compared (``equity_*_rel_diff_backtesting_py``): what differs is
    where the price cost is booked (all at entry there, half at each fill here, about
    ``slip`` while a trade is open) and backtesting.py's commission on the price before the
    spread, so a few 1e-4 remain.
    """
    from backtesting.lib import FractionalBacktest

    goog = {"GOOG": bars["GOOG"]}
    subset = sets[:n_bt]
    weights = forecast_threshold_array(subset, goog, forecasts[forecasts["symbol"] == "GOOG"])
    sim = align_bars(goog)
    orders = orders_from_weights(weights, sim.has_bar)
    t_kit, eq_kit = _best(
        lambda: _kitrade_equity(sim, orders), lambda: _kitrade_equity(sim, orders[:, :1]), repeat
    )
    _BT_WEIGHTS[:] = [weights[:, :, 0]]
    data = bars["GOOG"].rename(columns=str.capitalize)
    data.index = data.index.tz_localize(None)
    bt = FractionalBacktest(
        data,
        FollowWeights,
        fractional_unit=_BT_UNIT,
        cash=INIT_CASH,
        commission=COSTS.commission,
        spread=2 * COSTS.slip("GOOG"),
        exclusive_orders=True,
        finalize_trades=False,
    )

    def run_all() -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [bt.run(k=k)["_equity_curve"]["Equity"].to_numpy() for k in range(n_bt)]

    t_bt, eq_bt = _best(run_all, lambda: None, 1)
    rel = np.abs(eq_kit.to_numpy() - np.column_stack(eq_bt)) / np.column_stack(eq_bt)
    return {
        "backtesting_sets": n_bt,
        "backtesting_s": t_bt,
        "kitrade_goog_s": t_kit,
        "ratio_vs_backtesting_py": t_bt / t_kit,
        "equity_max_rel_diff_backtesting_py": float(np.nanmax(rel)),
        "equity_median_rel_diff_backtesting_py": float(np.nanmedian(rel)),
        "backtesting_processes": 1,
    }


def part_c(
    *, wf_folds: int = 4, wf_decisions: int = 24, wf_max_steps: int = 20, **_: Any
) -> dict[str, Any]:
    """Walk-forward folds as parallel Ray tasks against the same folds one after another."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _bench_walkforward import run_self_contained

    wf = run_self_contained(
        n_folds=wf_folds, decisions_per_fold=wf_decisions, max_steps=wf_max_steps
    )
    return {
        "walkforward_s": wf["parallel_s"],
        "walkforward_sequential_s": wf["sequential_s"],
        "walkforward_speedup": wf["speedup"],
        "walkforward_folds": wf["folds"],
        "walkforward_decisions": wf["decisions"],
        "walkforward_symbols": wf["symbols"],
        "walkforward_resources": wf["resources"],
        "walkforward_identical": wf["identical"],
    }


#: Part (c) is looked up here (a caller may replace it, e.g. with a no-op).
PART_C: Callable[..., dict[str, Any]] = part_c


def part_d(
    bars: dict[str, pd.DataFrame], forecasts: pd.DataFrame, cuts: int, seed: int = 0
) -> dict[str, Any]:
    """Truncation: values up to a cut must not change when the later bars are removed."""
    params = ForecastThreshold(horizon=3, enter=0.002, exit=0.001, hold_bars=2, allow_short=True)
    full_w = target_weights(params, bars, forecasts)
    full = run_backtest(bars, full_w, costs=COSTS)
    rng = np.random.default_rng(seed)
    differing = compared = 0
    for cut in rng.choice(full.equity.index[20:], size=cuts, replace=False):
        short_bars = {s: f[f.index <= cut] for s, f in bars.items()}
        short_w = target_weights(params, short_bars, forecasts[forecasts["issued_at"] <= cut])
        short = run_backtest(short_bars, short_w, costs=COSTS)
        n = len(short.equity)
        pairs = [
            (short_w.to_numpy(), full_w.to_numpy()[:n]),
            (short.equity.to_numpy(), full.equity.to_numpy()[:n]),
            (short.cash.to_numpy(), full.cash.to_numpy()[:n]),
            (short.positions.to_numpy(), full.positions.to_numpy()[:n]),
        ]
        for a, b in pairs:
            differing += int((a != b).sum())
            compared += a.size
        full_fills = full.fills[full.fills["ts"] <= cut].reset_index(drop=True)
        same_len = len(full_fills) == len(short.fills)
        differing += (
            int((short.fills != full_fills).to_numpy().sum())
            if same_len
            else max(len(full_fills), len(short.fills))
        )
    return {"cut_points": cuts, "values_compared": compared, "lookahead_violations": differing}


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _walkforward_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """Part (c)'s lines of the table (none when it was skipped)."""
    if "walkforward_s" not in results:
        return [("walk-forward folds (c)", "skipped")]
    return [
        (
            "walk-forward folds x decision bars (c)",
            f"{results['walkforward_folds']} x {results['walkforward_decisions']} "
            f"({', '.join(results['walkforward_symbols'])})",
        ),
        ("walk-forward, folds as parallel Ray tasks (s)", f"{results['walkforward_s']:.1f}"),
        ("walk-forward, one after another (s)", f"{results['walkforward_sequential_s']:.1f}"),
        (
            "walk-forward speed-up / identical forecasts",
            f"x{results['walkforward_speedup']:.2f} / {results['walkforward_identical']}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=1000, help="forecast_threshold parameter sets")
    parser.add_argument("--bt-sets", type=int, default=40, help="sets run through backtesting.py")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per side (best counts)")
    parser.add_argument("--cuts", type=int, default=20, help="truncation cut points")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--wf-folds", type=int, default=4, help="(c) folds per symbol")
    parser.add_argument("--wf-decisions", type=int, default=24, help="(c) decision bars per fold")
    parser.add_argument("--wf-max-steps", type=int, default=20, help="(c) NHITS steps per fold")
    parser.add_argument("--skip-walkforward", action="store_true", help="leave out part (c)")
    args = parser.parse_args(argv)

    bars = sample_bars()
    forecasts = drift_forecasts(bars, horizon=5)
    sets = param_grid(args.sets)
    results: dict[str, Any] = {"threads": 1}
    results.update(part_a(bars, forecasts, sets, args.repeat))
    results.update(part_b(bars, forecasts, sets, args.bt_sets, args.repeat))
    if not args.skip_walkforward:
        results.update(
            PART_C(
                wf_folds=args.wf_folds,
                wf_decisions=args.wf_decisions,
                wf_max_steps=args.wf_max_steps,
            )
        )
    results.update(part_d(bars, forecasts, args.cuts))
    _print_table(
        [
            (
                "bars x symbols x sets",
                f"{results['bars']} x {results['symbols']} x {results['sets']}",
            ),
            ("orders (non-NaN targets)", f"{results['orders']:,}"),
            ("kitrade engine (s)", f"{results['kitrade_s']:.3f}"),
            ("vectorbt from_orders + value (s)", f"{results['vectorbt_s']:.3f}"),
            (
                "  of which from_orders, value() the rest (s)",
                f"{results['vectorbt_from_orders_s']:.3f}",
            ),
            ("vectorbt inputs, untimed (s)", f"{results['vectorbt_inputs_s']:.3f}"),
            (
                "engine ratio vectorbt / kitrade",
                f"{results['engine_ratio_vs_vectorbt']:.2f} (target >= 1.0)",
            ),
            (
                "equity max relative difference",
                f"{results['equity_max_rel_diff']:.2e} (target <= 1e-6)",
            ),
            ("weights for all sets (s)", f"{results['weights_s']:.3f}"),
            ("weights -> orders, max_gross applied (s)", f"{results['orders_s']:.3f}"),
            (
                f"backtesting.py, {results['backtesting_sets']} sets on GOOG, one process (s)",
                f"{results['backtesting_s']:.2f}",
            ),
            ("kitrade, the same sets on GOOG (s)", f"{results['kitrade_goog_s']:.3f}"),
            ("ratio backtesting.py / kitrade", f"{results['ratio_vs_backtesting_py']:.1f}"),
            (
                "equity rel. difference vs backtesting.py, max / median",
                f"{results['equity_max_rel_diff_backtesting_py']:.1e} / "
                f"{results['equity_median_rel_diff_backtesting_py']:.1e}",
            ),
            *_walkforward_rows(results),
            (
                "truncation cut points / values compared",
                f"{results['cut_points']} / {results['values_compared']:,}",
            ),
            ("lookahead violations", f"{results['lookahead_violations']} (target 0)"),
        ]
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
