"""The backtest's bands calibrated point in time: nominal coverage from raw bands that miss,
raw bands kept, and no band moved by a bar after its decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.calibration import calibrate_forecasts
from kitrade.backtest.quality import forecast_quality
from kitrade.errors import InvalidInputError

H = 4


def _bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"close": close}, index=ts)


def _too_narrow(bars: pd.DataFrame, start: int, symbol: str = "AAA") -> pd.DataFrame:
    """A forecaster whose bands assume a third of the real volatility."""
    rows = []
    close = bars["close"].to_numpy()
    for p in range(start, len(bars) - H):
        for j in range(1, H + 1):
            sd = close[p] * 0.01 * np.sqrt(j) / 3
            rows.append(
                {
                    "symbol": symbol,
                    "issued_at": bars.index[p],
                    "step": j,
                    "mean": close[p],
                    "lo_80": close[p] - 1.28 * sd,
                    "hi_80": close[p] + 1.28 * sd,
                    "lo_95": close[p] - 1.96 * sd,
                    "hi_95": close[p] + 1.96 * sd,
                }
            )
    return pd.DataFrame(rows)


def test_calibrated_bands_reach_nominal_coverage_and_keep_the_raw_ones():
    bars = _bars(1_600, seed=3)
    raw = _too_narrow(bars, 100)
    cal = calibrate_forecasts(raw, {"AAA": bars})
    q_raw = forecast_quality(raw, {"AAA": bars}, step=H)
    q_cal = forecast_quality(cal, {"AAA": bars}, step=H)
    assert q_raw["coverage_80"] < 0.5
    assert abs(q_cal["coverage_80"] - 0.8) < 0.05 and abs(q_cal["coverage_95"] - 0.95) < 0.04
    assert q_cal["raw_coverage_80"] == pytest.approx(q_raw["coverage_80"])
    assert q_cal["interval_score_80"] < q_raw["interval_score_80"]
    np.testing.assert_array_equal(cal["raw_lo_80"].to_numpy(), raw["lo_80"].to_numpy())


def test_no_band_moves_when_bars_after_its_decision_change():
    bars = _bars(400, seed=1)
    raw = _too_narrow(bars, 50)
    decision = bars.index[250]
    altered = bars.copy()
    altered.loc[altered.index > decision, "close"] *= 1.5
    a = calibrate_forecasts(raw, {"AAA": bars})
    b = calibrate_forecasts(raw, {"AAA": altered})
    upto = a["issued_at"] <= decision
    pd.testing.assert_frame_equal(a[upto], b[upto])
    assert not a[~upto]["hi_80"].equals(b[~upto]["hi_80"])  # later bands did see the change


def test_a_forecast_issued_off_the_bars_is_refused():
    bars = _bars(100, seed=2)
    raw = _too_narrow(bars, 10)
    raw.loc[raw.index[:H], "issued_at"] = pd.Timestamp("2030-01-01", tz="UTC")
    with pytest.raises(InvalidInputError, match="issued at no bar"):
        calibrate_forecasts(raw, {"AAA": bars})
