"""Strategy kinds: parameter validation, each kind on the sample symbols, point-in-time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from kitrade.backtest.engine import Costs, run_backtest
from kitrade.backtest.strategies import (
    STRATEGY_KINDS,
    drift_forecasts,
    naive_signal,
    parse_strategy,
    prob_up,
    target_weights,
    threshold_positions,
)
from kitrade.errors import InvalidInputError

KINDS = {
    "forecast_threshold": {
        "horizon": 3,
        "enter": 1.0,
        "exit": 0.5,
        "enter_unit": "cost",
        "allow_short": True,
        "hold_bars": 2,
    },
    "forecast_interval": {"horizon": 5, "min_prob": 0.55, "allow_short": True, "target_vol": 0.02},
    "buy_and_hold": {"weight": 0.5},
    "sma_cross": {"fast": 5, "slow": 20, "allow_short": True},
    "naive_direction": {"allow_short": True},
}


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_strategy("moon_phase", {})
    assert "moon_phase" in str(err.value)
    for kind in STRATEGY_KINDS:
        assert kind in str(err.value)


@pytest.mark.parametrize(
    ("kind", "params", "named"),
    [
        ("forecast_threshold", {"enterr": 0.1}, "enterr"),
        ("forecast_threshold", {"enter": 0.001, "exit": 0.01}, "exit"),
        ("forecast_threshold", {"enter_unit": "pips"}, "enter_unit"),
        ("forecast_interval", {"max_weight": 1.5}, "max_weight"),
        ("sma_cross", {"fast": 30, "slow": 10}, "fast"),
        ("buy_and_hold", {"weight": 0}, "weight"),
    ],
)
def test_bad_parameters_name_themselves(kind, params, named) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_strategy(kind, params)
    assert named in str(err.value)


def test_parameters_are_frozen() -> None:
    params = parse_strategy("sma_cross", {"fast": 3, "slow": 9})
    with pytest.raises(Exception, match="frozen"):
        params.fast = 4  # type: ignore[misc]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_trades_the_sample_symbols_point_in_time(bars3, forecasts3, kind) -> None:
    params = parse_strategy(kind, KINDS[kind])
    costs = Costs()
    weights = target_weights(params, bars3, forecasts3, costs=costs)
    assert list(weights.columns) == list(bars3)
    assert weights.to_numpy().min() >= -1 and weights.to_numpy().max() <= 1
    assert (weights.abs().sum() > 0).all()
    result = run_backtest(bars3, weights, costs=costs)
    assert len(result.fills) > 0 and np.isfinite(result.equity).all()
    # Point in time: the weights up to a cut are the same when nothing after it exists.
    for cut in (weights.index[len(weights) // 3], weights.index[-40]):
        short_bars = {s: f[f.index <= cut] for s, f in bars3.items()}
        short_fc = forecasts3[forecasts3["issued_at"] <= cut]
        short = target_weights(params, short_bars, short_fc, costs=costs)
        pd.testing.assert_frame_equal(short, weights.loc[:cut])


def test_threshold_state_machine_by_hand() -> None:
    r = np.array([0.0, 0.02, 0.005, -0.001, -0.02, -0.02, 0.001, np.nan, 0.03])
    pos = threshold_positions(
        r,
        np.array([0.01, 0.01]),
        np.array([0.0, 0.0]),
        np.array([0.0, 3.0]),
        np.array([True, False]),
    )
    # Set 0: enter long, hold while r > exit, leave at -0.001, short at -0.02, cover at +0.001.
    assert pos[:, 0].tolist() == [0, 1, 1, 0, -1, -1, 0, 0, 1]
    # Set 1: long only, decided at bars 1-3 (held 3 bars once filled), then out on the
    # negative forecast.
    assert pos[:, 1].tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("hold_bars", [1, 2, 3, 5])
def test_hold_bars_holds_a_position_exactly_that_many_bars(hold_bars) -> None:
    """Enter on one bar's forecast, every later forecast says leave: the engine holds the
    position for ``hold_bars`` bars, from the fill that opens it to the one that leaves."""
    from kitrade.backtest.engine import make_costs

    idx = pd.date_range("2024-01-01", periods=12, freq="h", tz="UTC")
    bars = {"X": pd.DataFrame({"open": 100.0, "close": 100.0}, index=idx)}
    ret = np.r_[0.0, 0.05, np.full(len(idx) - 2, -0.05)]
    forecasts = pd.DataFrame(
        {
            "symbol": "X",
            "issued_at": idx,
            "step": 1,
            "mean": 100.0 * (1 + ret),
            **{k: 100.0 for k in ("lo_80", "hi_80", "lo_95", "hi_95")},
        }
    )
    params = parse_strategy("forecast_threshold", {"enter": 0.01, "hold_bars": hold_bars})
    weights = target_weights(params, bars, forecasts)
    result = run_backtest(bars, weights, costs=make_costs(financing=0.0, borrow=0.0))
    held = result.positions["X"] > 0
    assert int(held.sum()) == hold_bars
    assert held.idxmax() == idx[2]  # decided at bar 1, filled at bar 2's open


def test_cost_unit_thresholds_scale_with_the_costs(bars3, forecasts3) -> None:
    params = parse_strategy(
        "forecast_threshold", {"horizon": 5, "enter": 2.0, "enter_unit": "cost"}
    )
    cheap = target_weights(
        params,
        bars3,
        forecasts3,
        costs=Costs(commission=0.0, spread={"*": 0.0}, slippage={"*": 0.0}),
    )
    dear = target_weights(params, bars3, forecasts3, costs=Costs(commission=0.01))
    assert (dear.abs().sum() <= cheap.abs().sum()).all()
    assert dear.abs().sum().sum() < cheap.abs().sum().sum()
    with pytest.raises(InvalidInputError, match="costs"):
        target_weights(params, bars3, forecasts3)


def test_forecasts_that_saw_the_future_are_refused(bars3, forecasts3) -> None:
    leaky = forecasts3.copy()
    leaky.loc[leaky.index[5], "trained_through"] = leaky["issued_at"].iloc[5] + pd.Timedelta(
        hours=1
    )
    with pytest.raises(InvalidInputError, match="lookahead"):
        target_weights(parse_strategy("forecast_interval", {}), bars3, leaky)


def test_probability_of_an_up_move_matches_a_normal_forecast() -> None:
    mean, sigma = 100.0, 2.0
    levels = np.array([[mean + sigma * norm.ppf(q) for q in (0.025, 0.10, 0.5, 0.90, 0.975)]])
    for close in (95.0, 97.0, 99.0, 100.0, 101.0, 104.0, 106.0):
        expected = 1 - norm.cdf(close, mean, sigma)
        assert prob_up(np.array([close]), levels)[0] == pytest.approx(expected, abs=1e-9)


def test_naive_signal_follows_the_last_bar() -> None:
    idx = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC")
    bars = {"X": pd.DataFrame({"open": 1.0, "close": [1.0, 2.0, 1.5, 1.5, 3.0]}, index=idx)}
    assert naive_signal(bars, allow_short=True)["X"].tolist() == [0, 1, -1, 0, 1]
    assert naive_signal(bars)["X"].tolist() == [0, 1, 0, 0, 1]


def test_drift_forecasts_use_only_past_bars(bars3) -> None:
    goog = {"GOOG": bars3["GOOG"]}
    full = drift_forecasts(goog, horizon=2)
    cut = bars3["GOOG"].index[500]
    short = drift_forecasts({"GOOG": bars3["GOOG"].loc[:cut]}, horizon=2)
    pd.testing.assert_frame_equal(
        short.sort_values(["issued_at", "step"]).reset_index(drop=True),
        full[full["issued_at"] <= cut].sort_values(["issued_at", "step"]).reset_index(drop=True),
    )


def test_forecasts_with_naive_timestamps_still_meet_their_bars(bars3, forecasts3) -> None:
    params = parse_strategy("forecast_threshold", {"horizon": 2, "enter": 0.001})
    naive = forecasts3.assign(issued_at=forecasts3["issued_at"].dt.tz_localize(None))
    pd.testing.assert_frame_equal(
        target_weights(params, bars3, naive), target_weights(params, bars3, forecasts3)
    )
