"""The look-ahead checks fail on forecasters and strategies that peek, and pass on ours.

Real neuralforecast NHITS with a tiny configuration, in process (no Ray).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.folds import walk_forward_folds
from kitrade.backtest.forecasts import FORECAST_COLUMNS, FoldJob, run_in_process
from kitrade.backtest.lookahead import alter_after, forecast_check, weights_check
from kitrade.backtest.strategies import drift_forecasts, parse_strategy, target_weights
from tests.backtest.test_forecasts import TINY, synthetic


@pytest.fixture(scope="module")
def jobs() -> list[FoldJob]:
    out = []
    for seed, symbol in enumerate(("SYN", "OTH")):
        bars = synthetic(260, seed)
        config, folds = walk_forward_folds(
            bars, timeframe="H1", n_folds=2, start=bars.index[200], symbol=symbol, **TINY
        )
        out += [FoldJob(symbol, f, config, bars) for f in folds]
    return out


def _stored(run, jobs: Sequence[FoldJob]) -> pd.DataFrame:
    return pd.concat(list(run(jobs).values()), ignore_index=True)


def _frame(job: FoldJob, means: pd.Series) -> pd.DataFrame:
    """The contract's frame with ``means`` (by decision bar) at every step."""
    steps = np.arange(1, job.config.horizon + 1)
    issued = np.repeat(means.index, steps.size)
    mean = np.repeat(means.to_numpy(float), steps.size)
    return pd.DataFrame(
        {
            "symbol": job.symbol,
            "issued_at": issued,
            "step": np.tile(steps, means.size),
            "mean": mean,
            "lo_80": mean - 1,
            "hi_80": mean + 1,
            "lo_95": mean - 2,
            "hi_95": mean + 2,
            "model_version": "test",
            "trained_through": job.fold.trained_through,
        }
    )[list(FORECAST_COLUMNS)]


def _decisions(job: FoldJob) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(job.bars.index)
    return idx[(idx >= job.fold.start) & (idx <= job.fold.end)]


def peeks_one_bar_ahead(jobs: Sequence[FoldJob]) -> dict[tuple[str, int], pd.DataFrame]:
    """A leaking forecaster: its forecast at bar t is the close of bar t + 1."""
    out = {}
    for job in jobs:
        close = job.bars["close"]
        nxt = close.shift(-1).fillna(close).reindex(_decisions(job))
        out[(job.symbol, job.fold.index)] = _frame(job, nxt)
    return out


def scales_with_the_whole_fold(jobs: Sequence[FoldJob]) -> dict[tuple[str, int], pd.DataFrame]:
    """A subtler leak: the window ends at the decision bar, but it is normalised with the mean
    and spread of the whole fold (bars after the decision bar included)."""
    out = {}
    for job in jobs:
        close = job.bars["close"]
        fold = close.loc[: job.fold.end]
        z = (close - fold.mean()) / fold.std()
        out[(job.symbol, job.fold.index)] = _frame(job, (close * (1 + 1e-3 * z))[_decisions(job)])
    return out


def test_altering_after_a_bar_keeps_the_bars_up_to_it_and_moves_every_later_one() -> None:
    bars = synthetic(50, 0)
    at = bars.index[20]
    altered = alter_after(bars, at, seed=1)
    pd.testing.assert_frame_equal(altered.loc[:at], bars.loc[:at])
    later = bars.index > at
    prices = ["open", "high", "low", "close"]
    assert (altered.loc[later, prices] != bars.loc[later, prices]).all().all()
    assert (altered[["open", "high", "low", "close"]] > 0).all().all()


def test_the_forecast_check_passes_on_the_real_forecaster(jobs) -> None:
    stored = _stored(run_in_process, jobs)
    check = forecast_check(stored, jobs, run_in_process, sample=2, seed=0)
    assert check["passed"] is True, check
    assert check["detail"].startswith("0 of ")


@pytest.mark.parametrize("leaky", [peeks_one_bar_ahead, scales_with_the_whole_fold])
def test_the_forecast_check_fails_on_a_leaking_forecaster(jobs, leaky) -> None:
    stored = _stored(leaky, jobs)
    check = forecast_check(stored, jobs, leaky, sample=2, seed=0)
    assert check["passed"] is False, check
    assert "changed in" in check["detail"]


def test_the_forecast_check_fails_when_stored_forecasts_are_not_the_forecasters(jobs) -> None:
    # Forecasts stored by one forecaster and recomputed by another: they differ, so the check
    # also catches stored numbers that did not come from the point-in-time fold models.
    stored = _stored(peeks_one_bar_ahead, jobs)
    check = forecast_check(stored, jobs, scales_with_the_whole_fold, sample=1, seed=3)
    assert check["passed"] is False


def _weights_of(kind: str, params: Mapping) -> object:
    spec = parse_strategy(kind, dict(params))
    return lambda bars, forecasts: target_weights(spec, dict(bars), forecasts)


def _peeking_weights(bars, _forecasts) -> pd.DataFrame:
    """A strategy that is long when the next close is higher."""
    return pd.DataFrame(
        {s: (f["close"].shift(-1) > f["close"]).astype(float) for s, f in bars.items()}
    )


@pytest.mark.parametrize(
    ("weights_of", "passes"),
    [
        (_weights_of("sma_cross", {"fast": 3, "slow": 8}), True),
        (_weights_of("naive_direction", {}), True),
        (_weights_of("forecast_threshold", {"horizon": 2, "enter": 0.0005}), True),
        (_peeking_weights, False),
    ],
)
def test_the_weights_check_fails_only_on_a_strategy_that_peeks(weights_of, passes) -> None:
    bars = {"SYN": synthetic(200, 0), "OTH": synthetic(200, 1)}
    forecasts = drift_forecasts(bars, horizon=3, window=10)
    idx = bars["SYN"].index
    check = weights_check(weights_of, bars, forecasts, start=idx[50], end=idx[-2], sample=4)
    assert check["passed"] is passes, check
