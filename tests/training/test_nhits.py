"""NHITS fit/forecast/evaluation with tiny configurations on real and synthetic series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training import metrics as M
from kitrade.training.nhits import FittedModel, check_length, fit_and_evaluate, future_timestamps
from kitrade.training.spec import default_config, min_bars

TINY = {"max_steps": 30, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}


def frame_of(name: str, df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": name,
            "ds": pd.to_datetime(df.index).tz_localize("UTC"),
            "y": df["Close"].to_numpy(),
        }
    )


def seasonal(n: int = 600, season: int = 24, noise: float = 0.05) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = 10 + np.sin(2 * np.pi * t / season) + rng.normal(0, noise, n)
    return pd.DataFrame(
        {
            "unique_id": "SIN",
            "ds": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "y": y,
        }
    )


def test_metrics_by_hand():
    y, f, naive = [1.0, 2.0, 3.0], [1.5, 2.0, 2.0], [1.0, 1.0, 1.0]
    assert M.mae(y, f) == pytest.approx(0.5)
    assert M.rmse(y, f) == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    assert M.mase(y, f, naive) == pytest.approx(0.5 / 1.0)
    assert M.mase(y, naive, naive) == 1.0
    assert M.directional_accuracy([2, 0, 1], [3, 2, 5], [1, 1, 1]) == pytest.approx(0.5)
    assert M.coverage([1, 2, 3], [0, 2.5, 2], [2, 3, 4]) == pytest.approx(2 / 3)


def test_too_short_series_reports_numbers_not_a_crash():
    from backtesting.test import BTCUSD

    frame = frame_of("BTCUSD", BTCUSD).iloc[:40]
    cfg = default_config("MN1", None)
    with pytest.raises(TooShortError) as info:
        check_length(frame, cfg)
    msg = info.value.message
    assert (
        "BTCUSD: 40 bars" in msg and f"at least {min_bars(cfg)}" in msg and "input_size=24" in msg
    )


def test_monthly_btcusd_defaults_fit_156_bars():
    from backtesting.test import BTCUSD

    frame = frame_of("BTCUSD", BTCUSD)
    cfg = default_config("MN1", len(frame), **TINY)
    assert len(frame) == 156 and min_bars(cfg) <= 156
    model, report = fit_and_evaluate(frame, cfg)
    fc = model.predict()
    assert len(fc) == cfg.horizon
    assert fc["ds"].iloc[0] == pd.Timestamp("2025-01-31", tz="UTC")  # next month end
    assert report.naive.mase == 1.0 and report.windows == cfg.cv_windows


def test_forecast_bands_ordered_and_timestamps_follow_the_series(tmp_path):
    from backtesting.test import GOOG

    frame = frame_of("GOOG", GOOG)
    cfg = default_config("D1", len(frame), **TINY)
    model, report = fit_and_evaluate(frame, cfg)
    fc = model.predict(horizon=5)
    assert len(fc) == 5
    assert (fc["lo_95"] <= fc["lo_80"] + 1e-9).all() and (fc["hi_80"] <= fc["hi_95"] + 1e-9).all()
    assert (fc["lo_80"] <= fc["hi_80"]).all()
    assert (fc["ds"] > frame["ds"].iloc[-1]).all()
    assert (fc["ds"].dt.day_of_week < 5).all()  # GOOG has no weekend bars, nor do its forecasts
    with pytest.raises(InvalidInputError, match=f"1..{cfg.horizon}"):
        model.predict(horizon=cfg.horizon + 1)
    model.save(tmp_path)
    again = FittedModel.load(tmp_path).predict(frame, horizon=5)
    np.testing.assert_allclose(
        again[["mean", "lo_80", "hi_95"]], fc[["mean", "lo_80", "hi_95"]], rtol=1e-5
    )
    assert {"model", "naive", "seasonal_naive"} <= set(report.model_dump())
    for block in (report.model, report.naive, report.seasonal_naive):
        assert 0 <= block.coverage_80 <= 1 and 0 <= block.coverage_95 <= 1


def test_model_beats_naive_on_a_seasonal_series():
    frame = seasonal()
    cfg = default_config(
        "H1", len(frame), max_steps=150, mlp_units=64, val_check_steps=25, input_size=48
    )
    _, report = fit_and_evaluate(frame, cfg)
    assert report.model.mase < 1.0 and report.beats_naive
    assert report.seasonal_naive.mase < 1.0  # the baseline also sees the season


def test_future_timestamps_skip_weekends_only_when_history_does():
    weekdays = pd.Series(pd.bdate_range("2024-01-01", periods=10, tz="UTC"))
    assert list(future_timestamps(weekdays, 3).day_of_week) == [
        0,
        1,
        2,
    ]  # after Fri 12 Jan: Mon..Wed
    crypto = pd.Series(pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC"))
    assert list(future_timestamps(crypto, 2).day) == [11, 12]


def test_direct_batched_inference_matches_neuralforecast_predict():
    from backtesting.test import EURUSD

    frame = frame_of("EURUSD", EURUSD)
    cfg = default_config("H1", len(frame), **TINY)
    model, _ = fit_and_evaluate(frame, cfg)
    earlier = frame.iloc[:-7]
    direct = model.predict_many([frame, earlier])
    for got, f in zip(direct, [frame, earlier], strict=True):
        ref = model.predict_reference(f)
        np.testing.assert_allclose(
            got[["mean", "lo_80", "hi_80", "lo_95", "hi_95"]],
            ref[["mean", "lo_80", "hi_80", "lo_95", "hi_95"]],
            rtol=1e-4,
        )
        assert (got["ds"] == ref["ds"]).all()
