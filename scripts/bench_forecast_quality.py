"""Benchmark: do kitrade's bands cover what they promise on bars no model saw?

For each symbol (the bundled samples, and every ``<SYMBOL>_<TF>.csv`` of ``--files DIR``):

1. **Train through a cut date**, exactly as ``kitrade train`` does (``fit_and_evaluate``: fit
   on the series up to the cut minus its evaluation tail, then the rolling-origin evaluation of
   that tail, which also calibrates the bands). The cut leaves ``--origins`` later origins
   (at least 250 where the series allows; fewer for BTCUSD's 156 monthly bars).
2. **Judge on every later origin**, one bar at a time as a running platform would: before
   each origin the calibration takes in every outcome closed by then
   (``conformal.advance``, adaptive conformal inference), then the origin's raw bands are
   calibrated with the factors in effect. The baseline zoo (random walk with empirical and
   GARCH(1,1) bands, AutoETS, seasonal naive) forecasts the same origins, fitted on the bars
   through the cut only. Only origins whose whole horizon is known are scored.

Prints per symbol and overall: raw and calibrated coverage at 80 and 95 % (target 80/95),
calibrated NHITS's interval scores over the best baseline's and over GARCH's, rMAE against
the random walk with the Diebold-Mariano p-value, and the time spent calibrating (in
training and online) against the training run's time.

Both sides run in this one process on the same bars and origins; torch uses its default
threads (printed). Baselines are fitted once per symbol, NHITS once per symbol.

Usage:
    python scripts/bench_forecast_quality.py [--symbols EURUSD,GOOG,BTCUSD] [--files DIR]
        [--origins 250] [--max-steps N] [--target level|log_return] [--gamma G] [--json PATH]

JSON keys: ``cov80_abs_err_max``, ``cov95_abs_err_max`` (largest distance from nominal over
symbols, calibrated), ``raw_cov80_abs_err_max``, ``raw_cov95_abs_err_max``,
``interval_score_ratio_vs_best_baseline`` and ``interval_score_ratio_vs_garch`` (80 %, mean
over symbols), ``rmae_mean``, ``calibration_time_share`` (calibration seconds over training
seconds, largest over symbols), ``symbols``, ``origins_min``, and ``per_symbol``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kitrade.data.sources.files import FilesSource
from kitrade.data.sources.sample import SAMPLE_SYMBOLS, SampleSource
from kitrade.training import conformal, scores
from kitrade.training import metrics as fm
from kitrade.training.evaluation import baseline_zoo, fit_and_evaluate, naive_test
from kitrade.training.spec import default_config, min_bars

BANDS = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")


def load(source: Any, symbol: str) -> pd.DataFrame:
    """``unique_id, ds, y`` of one symbol from a market-data source."""
    frames = list(source.fetch(symbol))
    bars = pd.concat(frames, ignore_index=True).sort_values("ts")
    return pd.DataFrame(
        {"unique_id": symbol, "ds": pd.to_datetime(bars["ts"], utc=True), "y": bars["close"]}
    ).reset_index(drop=True)


def plan(n: int, timeframe: str, origins: int, over: dict[str, Any]) -> tuple[Any, int]:
    """The training configuration and the cut (position of the last training bar): as many
    judged origins as asked for, at most half the series and fewer where the bars before the
    cut could not train."""
    judged = min(origins, n // 2)  # at least half the bars train
    while judged > 1:
        cut = n - judged - default_config(timeframe, n).horizon - 1
        config = default_config(timeframe, cut + 1, **over)
        if cut + 1 >= min_bars(config) and config.cv_windows >= 4:
            return config, cut
        judged -= 1
    raise SystemExit(f"{n} bars of {timeframe}: too few to train and judge")


def judge(model: Any, y: np.ndarray, cut: int, state: conformal.ConformalState) -> dict:
    """Raw and online-calibrated NHITS bands at every origin after ``cut`` with a full horizon.

    Returns the origins, the raw and calibrated bands and the seconds spent calibrating."""
    h, size = model.config.horizon, model.nf.models[0].input_size
    cutoffs = np.arange(cut, len(y) - h)
    everything = np.arange(size - 1, len(y) - 1)
    windows = np.lib.stride_tricks.sliding_window_view(y, size)[everything - size + 1]
    table = model.predict_tails(windows)  # every cutoff's raw forecast, one batched pass

    def raw_for(at: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[at - (size - 1)] for k, v in table.items()}

    raw = raw_for(cutoffs)
    cal = {k: np.empty_like(v) for k, v in raw.items()}
    spent, taken_through = 0.0, cut + 1
    for i, c in enumerate(cutoffs):
        t0 = time.perf_counter()
        conformal.advance(state, y[: c + 1], taken_through, raw_for, min_cutoff=size - 1)
        taken_through = c + 1
        row = state.apply({k: v[i : i + 1] for k, v in raw.items()})
        spent += time.perf_counter() - t0
        for k in BANDS:
            cal[k][i] = row[k][0]
    return {"cutoffs": cutoffs, "raw": raw, "calibrated": cal, "seconds": spent}


def score_symbol(frame: pd.DataFrame, timeframe: str, args: argparse.Namespace) -> dict:
    """Train through the cut, judge every later origin, score every method."""
    y = frame["y"].to_numpy(dtype="float64")
    over: dict[str, Any] = {"target": args.target}
    if args.max_steps is not None:
        over["max_steps"] = args.max_steps
    if args.gamma is not None:
        over["conformal_gamma"] = args.gamma
    config, cut = plan(len(y), timeframe, args.origins, over)
    t0 = time.perf_counter()
    model, report = fit_and_evaluate(frame.iloc[: cut + 1], config)
    train_s = time.perf_counter() - t0
    state = conformal.ConformalState.from_json(model.calibration[str(frame["unique_id"][0])])
    judged = judge(model, y, cut, state)
    cutoffs, h = judged["cutoffs"], config.horizon
    zoo, errors = baseline_zoo(y, cutoffs, h, train_end=cut + 1, season_length=config.season_length)
    closes = cutoffs[:, None] + np.arange(1, h + 1)[None, :]
    actual, steps = y[closes].reshape(-1), np.tile(np.arange(1, h + 1), len(cutoffs))
    methods = {"nhits": judged["raw"], "nhits_calibrated": judged["calibrated"]} | zoo
    scored, winners = scores.compare(
        {
            name: scores.prob_scores(actual, steps, {k: v.reshape(-1) for k, v in fc.items()}, h)
            for name, fc in methods.items()
        }
    )
    mean = judged["raw"]["mean"].reshape(-1)
    last = np.repeat(y[cutoffs], h)
    dm = naive_test(np.repeat(cutoffs, h), steps, actual - mean, actual - last)
    cal, best = scored["nhits_calibrated"], scores.best_baseline(scored)
    cal_s = judged["seconds"] + _evaluation_calibration_seconds(model, frame.iloc[: cut + 1])
    return {
        "timeframe": timeframe,
        "bars": len(y),
        "cut": frame["ds"].iloc[cut].isoformat(),
        "origins": len(cutoffs),
        "train_s": round(train_s, 2),
        "calibration_s": round(cal_s, 3),
        "raw_cov80": scored["nhits"].coverage_80,
        "raw_cov95": scored["nhits"].coverage_95,
        "cov80": cal.coverage_80,
        "cov95": cal.coverage_95,
        "best_baseline": best,
        "is80_ratio_vs_best": _ratio(cal, scored[best]) if best else None,
        "is80_ratio_vs_garch": _ratio(cal, scored["rw_garch"]) if "rw_garch" in scored else None,
        "is95_ratio_vs_best": _ratio(cal, scored[best], "interval_score_95") if best else None,
        "rmae": fm.rmae(actual, mean, last),
        "dm_pvalue": dm["dm_pvalue"],
        "verdict": dm["verdict"],
        "baseline_beats_model": scores.dominating_baseline(scored, winners),
        "winners": winners,
        "evaluation_verdict": report.verdict,
        "baseline_errors": errors,
        "methods": {k: v.model_dump(exclude={"per_step"}) for k, v in scored.items()},
    }


def _ratio(a: Any, b: Any, score: str = "interval_score_80") -> float | None:
    x, y = getattr(a, score), getattr(b, score)
    return None if x is None or not y else float(x / y)


def _evaluation_calibration_seconds(model: Any, frame: pd.DataFrame) -> float:
    """What the training run's calibration (``conformal.sequential`` over the evaluation
    tail) costs, timed again on the same forecasts."""
    from kitrade.training.evaluation import rolling_forecasts

    cv = rolling_forecasts(model, frame)
    cfg = model.config
    origins = np.unique(cv["cutoff"].to_numpy())
    cols = {"mean": "NHITS-median", "lo_80": "NHITS-lo-80", "hi_80": "NHITS-hi-80"}
    cols |= {"lo_95": "NHITS-lo-95", "hi_95": "NHITS-hi-95"}
    raw = {k: cv[c].to_numpy().reshape(len(origins), -1) for k, c in cols.items()}
    actual = cv["y"].to_numpy().reshape(len(origins), -1)
    state = conformal.ConformalState(
        horizon=cfg.horizon, gamma=cfg.conformal_gamma, window=cfg.conformal_window
    )
    t0 = time.perf_counter()
    conformal.sequential(raw, actual, origins, calibration_origins=len(origins) // 2, state=state)
    return time.perf_counter() - t0


def symbols_to_run(args: argparse.Namespace) -> list[tuple[str, Any, str]]:
    """``(symbol, source, timeframe)`` of every symbol asked for."""
    out: list[tuple[str, Any, str]] = []
    sample = SampleSource()
    for s in args.symbols.split(","):
        if s:
            out.append((s, sample, SAMPLE_SYMBOLS[s][0]))
    if args.files:
        files = FilesSource(Path(args.files))
        out += [(spec.symbol, files, spec.timeframe) for spec in files.list_symbols()]
    return out


def summary(per: dict[str, dict]) -> dict[str, Any]:
    """The JSON keys over every symbol."""

    def worst(key: str, nominal: float) -> float:
        return max(abs(r[key] - nominal) for r in per.values())

    def mean(key: str) -> float | None:
        vals = [r[key] for r in per.values() if r[key] is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "cov80_abs_err_max": worst("cov80", 0.8),
        "cov95_abs_err_max": worst("cov95", 0.95),
        "raw_cov80_abs_err_max": worst("raw_cov80", 0.8),
        "raw_cov95_abs_err_max": worst("raw_cov95", 0.95),
        "interval_score_ratio_vs_best_baseline": mean("is80_ratio_vs_best"),
        "interval_score_ratio_vs_garch": mean("is80_ratio_vs_garch"),
        "rmae_mean": mean("rmae"),
        "calibration_time_share": max(r["calibration_s"] / r["train_s"] for r in per.values()),
        "symbols": len(per),
        "origins_min": min(r["origins"] for r in per.values()),
    }


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_table(per: dict[str, dict], total: dict[str, Any]) -> None:
    head = (
        f"{'symbol':8} {'tf':4} {'origins':>7} {'raw80':>6} {'cal80':>6} {'raw95':>6} "
        f"{'cal95':>6} {'IS/best':>8} {'best':>15} {'IS/GARCH':>8} {'rMAE':>6} {'DM p':>6} "
        f"{'cal s':>6} {'train s':>7}"
    )
    print(head)
    for s, r in per.items():
        print(
            f"{s:8} {r['timeframe']:4} {r['origins']:7d} {r['raw_cov80']:6.3f} {r['cov80']:6.3f} "
            f"{r['raw_cov95']:6.3f} {r['cov95']:6.3f} {_fmt(r['is80_ratio_vs_best']):>8} "
            f"{r['best_baseline'] or '-':>15} {_fmt(r['is80_ratio_vs_garch']):>8} "
            f"{r['rmae']:6.3f} {r['dm_pvalue'] or 0:6.3f} {r['calibration_s']:6.2f} "
            f"{r['train_s']:7.1f}"
        )
        if r["baseline_beats_model"]:
            print(f"  {r['baseline_beats_model']} beats calibrated NHITS on every score")
    print(json.dumps(total, indent=1))
    targets = [
        ("cov80_abs_err_max <= 0.03", total["cov80_abs_err_max"] <= 0.03),
        ("cov95_abs_err_max <= 0.02", total["cov95_abs_err_max"] <= 0.02),
        (
            "interval_score_ratio_vs_garch <= 1.0",
            (total["interval_score_ratio_vs_garch"] or 9) <= 1,
        ),
        ("calibration_time_share < 0.05", total["calibration_time_share"] < 0.05),
    ]
    for name, ok in targets:
        print(f"{'met ' if ok else 'MISSED'} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", default="EURUSD,GOOG,BTCUSD", help="sample symbols")
    parser.add_argument("--files", default=None, help="a folder of <SYMBOL>_<TF>.csv files")
    parser.add_argument("--origins", type=int, default=250, help="judged origins per symbol")
    parser.add_argument("--max-steps", type=int, default=None, help="NHITS steps (default: tf)")
    parser.add_argument("--target", default="level", choices=("level", "log_return"))
    parser.add_argument("--gamma", type=float, default=None, help="ACI step (default: config)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    per: dict[str, dict] = {}
    for symbol, source, timeframe in symbols_to_run(args):
        per[symbol] = score_symbol(load(source, symbol), timeframe, args)
        print(f"{symbol}: done in {per[symbol]['train_s']:.1f} s of training", flush=True)
    total = summary(per)
    print_table(per, total)
    if args.json:
        Path(args.json).write_text(json.dumps(total | {"per_symbol": per}, indent=1, default=str))


if __name__ == "__main__":
    main()
