"""Look-ahead checks that can fail: change the future, recompute, compare the past.

Pure logic (no Ray, no database); the forecaster is passed in, so the service runs it as Ray
tasks and a test can pass one that cheats.

* ``forecasts_unchanged_when_later_bars_change``: for a sample of (symbol, fold) pairs a
  decision bar ``t`` is drawn inside the fold, every bar after ``t`` is altered
  (``alter_after``: prices moved by a random walk and a 20 % jump, volumes tripled), and the
  fold's forecasts are computed again from scratch, its model trained again too. Every
  forecast the fold issued at or before ``t`` must equal the stored one. Whatever path a
  later bar takes into a forecast (training on it, normalising with it, a window that runs
  past the decision bar) makes the numbers move, and the check fails.
* ``weights_unchanged_when_later_bars_change``: the strategy's target weights are computed
  again on bars altered after a sampled bar ``t``, given only the forecasts issued at or
  before ``t``; the weights up to ``t`` must not change. Cheap, so it samples several bars,
  and it covers the strategies that read bars only.

Both answer ``{"name", "passed", "detail"}`` like the other checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from kitrade.backtest.folds import Fold
from kitrade.backtest.forecasts import FoldJob

__all__ = [
    "FORECAST_CHECK",
    "WEIGHTS_CHECK",
    "Probe",
    "alter_after",
    "forecast_check",
    "probes",
    "weights_check",
]

FORECAST_CHECK = "forecasts_unchanged_when_later_bars_change"
WEIGHTS_CHECK = "weights_unchanged_when_later_bars_change"
_LEVELS = ["mean", "lo_80", "hi_80", "lo_95", "hi_95"]
_PRICES = ["open", "high", "low", "close"]
#: ``run(jobs) -> {(symbol, fold index): forecasts}``: the forecaster under test.
RunFolds = Callable[[Sequence[FoldJob]], Mapping[tuple[str, int], pd.DataFrame]]


@dataclass(frozen=True)
class Probe:
    """One sampled fold and the decision bar after which its bars are altered."""

    job: FoldJob
    at: pd.Timestamp


def alter_after(bars: pd.DataFrame, at: pd.Timestamp, *, seed: int = 0) -> pd.DataFrame:
    """``bars`` with every bar after ``at`` changed and the bars up to ``at`` untouched.

    Prices are multiplied by ``1.2 * exp(random walk of 5 % steps)`` (OHLC alike, so the bars
    stay consistent and positive); a ``volume`` column is tripled.
    """
    out = bars.copy()
    later = np.flatnonzero(pd.DatetimeIndex(out.index) > at)
    if later.size == 0:
        return out
    rng = np.random.default_rng(seed)
    factor = 1.2 * np.exp(np.cumsum(rng.normal(0.0, 0.05, later.size)))
    for col in (c for c in _PRICES if c in out.columns):
        values = out[col].to_numpy(float, copy=True)
        values[later] *= factor
        out[col] = values
    if "volume" in out.columns:
        volume = out["volume"].to_numpy(float, copy=True)
        volume[later] *= 3.0
        out["volume"] = volume
    return out


def probes(jobs: Sequence[FoldJob], *, sample: int, seed: int = 0) -> list[Probe]:
    """``sample`` folds drawn at random from ``jobs``, each with a random decision bar."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(jobs), size=min(sample, len(jobs)), replace=False)
    out = []
    for k in sorted(int(p) for p in picked):
        job = jobs[k]
        index = pd.DatetimeIndex(job.bars.index)
        inside = index[(index >= job.fold.start) & (index <= job.fold.end)]
        if len(inside):
            out.append(Probe(job=job, at=inside[int(rng.integers(len(inside)))]))
    return out


def forecast_check(
    stored: pd.DataFrame,
    jobs: Sequence[FoldJob],
    run: RunFolds,
    *,
    sample: int = 2,
    seed: int = 0,
    rtol: float = 1e-6,
) -> dict[str, Any]:
    """Recompute sampled folds on bars altered after a decision bar; compare with ``stored``.

    Args:
        stored: the forecasts the backtest uses (the contract's frame).
        jobs: the backtest's (symbol, fold) units, with the bars they were made from.
        run: the forecaster (``forecasts.compute_forecasts`` on Ray, ``run_in_process``).
        sample: how many folds to recompute (each trains its model again).
        seed: picks the folds, the bars and the alteration.
        rtol: relative tolerance of "equal" (a recomputation on the same device is exact;
            the tolerance only absorbs floating-point noise, far below what a leak moves).

    Returns:
        ``{"name", "passed", "detail"}``; not passed when any forecast at or before its
        probe bar changed or went missing, or when nothing could be compared.
    """
    chosen = probes(jobs, sample=sample, seed=seed)
    altered = [
        replace(p.job, bars=alter_after(p.job.bars, p.at, seed=seed + i))
        for i, p in enumerate(chosen)
    ]
    again = run(altered)
    changed = compared = 0
    where: list[str] = []
    for p in chosen:
        before = _upto(stored, p.job.symbol, p.job.fold, p.at)
        after = _upto(again[(p.job.symbol, p.job.fold.index)], p.job.symbol, p.job.fold, p.at)
        moved = _differing(before, after, rtol)
        changed, compared = changed + moved, compared + len(before)
        if moved:
            where.append(f"{p.job.fold.label(p.job.symbol)} up to {p.at:%Y-%m-%d %H:%M}")
    folds = ", ".join(f"{p.job.fold.label(p.job.symbol)} at {p.at:%Y-%m-%d %H:%M}" for p in chosen)
    detail = (
        f"{changed} of {compared} stored forecasts changed when every bar after their decision "
        f"bar was altered and the fold recomputed ({folds or 'no fold sampled'})"
    )
    if where:
        detail += "; changed in " + "; ".join(where)
    return {"name": FORECAST_CHECK, "passed": compared > 0 and changed == 0, "detail": detail}


def _upto(frame: pd.DataFrame, symbol: str, fold: Fold, at: pd.Timestamp) -> pd.DataFrame:
    """The fold's forecasts of ``symbol`` issued up to ``at``, sorted by bar and step."""
    issued = pd.to_datetime(frame["issued_at"], utc=True)
    rows = frame[(frame["symbol"] == symbol) & (issued >= fold.start) & (issued <= at)]
    rows = rows.assign(issued_at=pd.to_datetime(rows["issued_at"], utc=True))
    return rows.sort_values(["issued_at", "step"]).reset_index(drop=True)


def _differing(before: pd.DataFrame, after: pd.DataFrame, rtol: float) -> int:
    """How many rows of ``before`` are missing from ``after`` or differ in a level."""
    joined = before.merge(
        after, on=["issued_at", "step"], how="left", suffixes=("", "_again"), indicator=True
    )
    missing = (joined["_merge"] != "both").to_numpy()
    a = joined[_LEVELS].to_numpy(float)
    b = joined[[f"{c}_again" for c in _LEVELS]].to_numpy(float)
    close = np.isclose(a, b, rtol=rtol, atol=0.0).all(axis=1)
    return int((missing | ~close).sum())


def weights_check(
    weights_of: Callable[[Mapping[str, pd.DataFrame], pd.DataFrame], pd.DataFrame],
    bars: Mapping[str, pd.DataFrame],
    forecasts: pd.DataFrame,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    sample: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The strategy's weights up to a bar must not move when the later bars change.

    Args:
        weights_of: ``(bars, forecasts) -> target weights`` of the strategy under test.
        bars: symbol -> bars.
        forecasts: the point-in-time forecasts (possibly empty).
        start, end: the decision period; the sampled bars lie in it.
        sample: how many bars to cut at.
        seed: picks the bars and the alteration.
    """
    full = weights_of(bars, forecasts)
    grid = full.index[(full.index >= start) & (full.index <= end)]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(grid), size=min(sample, len(grid)), replace=False)
    cuts = [grid[int(k)] for k in sorted(picked)]
    changed = compared = 0
    for i, at in enumerate(cuts):
        altered = {s: alter_after(f, at, seed=seed + i) for s, f in bars.items()}
        known = forecasts
        if len(forecasts):
            known = forecasts[pd.to_datetime(forecasts["issued_at"], utc=True) <= at]
        again = weights_of(altered, known)
        mine, theirs = full.loc[full.index <= at], again.loc[again.index <= at]
        theirs = theirs.reindex(index=mine.index, columns=mine.columns)
        same = np.isclose(
            mine.to_numpy(float), theirs.to_numpy(float), rtol=0, atol=1e-12, equal_nan=True
        )
        changed += int((~same).sum())
        compared += same.size
    detail = (
        f"{changed} of {compared} target weights up to {len(cuts)} sampled bars changed when "
        "every later bar was altered"
    )
    return {"name": WEIGHTS_CHECK, "passed": compared > 0 and changed == 0, "detail": detail}
