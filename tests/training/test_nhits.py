"""NHITS fit/forecast/evaluation with tiny configurations on real and synthetic series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training.evaluation import evaluate, fit_and_evaluate
from kitrade.training.nhits import (
    FittedModel,
    check_length,
    fit,
    future_timestamps,
)
from kitrade.training.spec import TIMEFRAMES, default_config, freq_for, min_bars

TINY = {"max_steps": 30, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}
BANDS = ["mean", "lo_80", "hi_80", "lo_95", "hi_95"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def random_walk(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "unique_id": "RW",
            "ds": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "y": 100 + np.cumsum(rng.normal(0, 1, n)),
        }
    )


def assert_bands_ordered(fc: pd.DataFrame) -> None:
    assert (fc["lo_95"] <= fc["lo_80"] + 1e-9).all() and (fc["hi_80"] <= fc["hi_95"] + 1e-9).all()
    assert (fc["lo_80"] <= fc["mean"] + 1e-9).all() and (fc["mean"] <= fc["hi_80"] + 1e-9).all()


def test_every_timeframe_has_defaults_and_a_frequency():
    for tf in TIMEFRAMES:
        cfg = default_config(tf)
        assert cfg.levels == (80, 95) and cfg.val_size == cfg.horizon
        assert min_bars(cfg) == (
            cfg.input_size + cfg.horizon + cfg.val_size + cfg.horizon
            + cfg.step_size * (cfg.cv_windows - 1)
        )  # fmt: skip
        assert min_bars(cfg, evaluate=False) == cfg.input_size + cfg.horizon + cfg.val_size
        pd.tseries.frequencies.to_offset(freq_for(tf))  # a valid pandas alias
    assert default_config("H1").horizon == 24 and default_config("H1").season_length == 24
    assert default_config("D1").season_length == 5 and default_config("MN1").season_length == 12
    with pytest.raises(InvalidInputError, match="timeframe"):
        default_config("H2")
    with pytest.raises(InvalidInputError, match="timeframe"):
        freq_for("H2")


def test_too_short_series_reports_numbers_not_a_crash():
    from backtesting.test import BTCUSD

    frame = frame_of("BTCUSD", BTCUSD).iloc[:40]
    cfg = default_config("MN1", None)
    with pytest.raises(TooShortError) as info:
        check_length(frame, cfg)
    msg = info.value.message
    assert msg.startswith(f"BTCUSD: 40 bars, expected at least {min_bars(cfg)} for input_size=24")
    assert "horizon=6" in msg and "val_size=6" in msg and "cv_windows=36" in msg


def test_btcusd_is_too_short_for_an_hourly_style_config_and_says_so():
    from backtesting.test import BTCUSD

    frame = frame_of("BTCUSD", BTCUSD)
    cfg = default_config("MN1", None, input_size=120, horizon=24, cv_windows=3)
    assert min_bars(cfg) > len(frame) == 156
    with pytest.raises(TooShortError, match=f"BTCUSD: 156 bars, expected at least {min_bars(cfg)}"):
        fit_and_evaluate(frame, cfg)
    with pytest.raises(TooShortError, match="BTCUSD: 156 bars"):
        fit(frame, cfg)  # fit alone needs no evaluation tail, but still more than 156


def test_monthly_btcusd_defaults_fit_156_bars():
    from backtesting.test import BTCUSD

    frame = frame_of("BTCUSD", BTCUSD)
    cfg = default_config("MN1", len(frame))  # the real defaults, not a tiny config
    assert len(frame) == 156 and min_bars(cfg) <= 156
    model, report = fit_and_evaluate(frame, cfg)
    fc = model.predict()
    assert len(fc) == cfg.horizon
    assert fc["ds"].iloc[0] == pd.Timestamp("2025-01-31", tz="UTC")  # next month end
    assert_bands_ordered(fc)
    assert report.naive.rmae == 1.0 and report.n_origins == cfg.cv_windows
    # a quarter of 156 bars is the held-out tail: (39 - 6) // 1 + 1 origins
    assert cfg.cv_windows == 34 and report.step_size == 1 and report.points == 34 * 6


def test_forecast_bands_ordered_and_timestamps_follow_the_series(tmp_path):
    from backtesting.test import GOOG

    frame = frame_of("GOOG", GOOG)
    cfg = default_config("D1", len(frame), **TINY)
    model, report = fit_and_evaluate(frame, cfg)
    fc = model.predict(horizon=5)
    assert list(fc.columns) == ["ds", *BANDS] and len(fc) == 5
    assert_bands_ordered(fc)
    assert (fc["ds"] > frame["ds"].iloc[-1]).all() and fc["ds"].is_monotonic_increasing
    assert (fc["ds"].dt.day_of_week < 5).all()  # GOOG has no weekend bars, nor do its forecasts
    with pytest.raises(InvalidInputError, match=f"1..{cfg.horizon}"):
        model.predict(horizon=cfg.horizon + 1)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["last_ds"] == frame["ds"].iloc[-1].isoformat() and meta["step_seconds"] == 86400
    again = FittedModel.load(tmp_path)
    assert again.config == cfg
    np.testing.assert_allclose(again.predict(frame, horizon=5)[BANDS], fc[BANDS], rtol=1e-5)
    np.testing.assert_allclose(again.predict(horizon=5)[BANDS], fc[BANDS], rtol=1e-5)
    assert {"model", "naive", "seasonal_naive"} <= set(report.model_dump())
    for block in (report.model, report.naive, report.seasonal_naive):
        assert 0 <= block.coverage_80 <= 1 and 0 <= block.coverage_95 <= 1


def test_fit_on_the_whole_series_then_forecast_from_new_bars():
    frame = random_walk()
    cfg = default_config("H1", len(frame), input_size=48, **TINY)
    model = fit(frame, cfg)
    fc = model.predict()
    assert len(fc) == 24 and fc["ds"].iloc[0] == frame["ds"].iloc[-1] + pd.Timedelta(hours=1)
    assert_bands_ordered(fc)
    # Serving: a later history (not seen in training) is the forecast origin.
    newer = pd.concat(
        [
            frame,
            pd.DataFrame(
                {
                    "unique_id": "RW",
                    "ds": frame["ds"].iloc[-1] + pd.to_timedelta(np.arange(1, 11), "h"),
                    "y": frame["y"].iloc[-1] + 50.0,  # a jump the model must follow
                }
            ),
        ],
        ignore_index=True,
    )
    later = model.predict(newer, horizon=3)
    assert later["ds"].iloc[0] == newer["ds"].iloc[-1] + pd.Timedelta(hours=1)
    assert later["mean"].iloc[0] > fc["mean"].iloc[0] + 25  # it used the new bars
    with pytest.raises(TooShortError, match="48"):
        model.predict(newer.iloc[-10:])


def test_evaluation_on_eurusd_says_honestly_whether_naive_was_beaten():
    from backtesting.test import EURUSD

    frame = frame_of("EURUSD", EURUSD)
    assert len(frame) == 5000
    cfg = default_config("H1", len(frame), **TINY)
    report = evaluate(frame, cfg)
    json.dumps(report.model_dump(mode="json"))  # storable in the registry as is
    assert report.naive.rmae == 1.0 and report.seasonal_naive.rmae is not None
    assert report.naive.directional_accuracy is None  # naive never predicts a move
    assert report.model.mase is not None and report.model.mase > 0
    # hundreds of origins one bar apart, each forecasting the whole horizon
    assert report.n_origins == cfg.cv_windows == 250 and report.step_size == 1
    assert report.points == report.n_origins * cfg.horizon
    assert report.eval_end == frame["ds"].iloc[-1].isoformat()
    # the verdict is the Diebold-Mariano test's, not rMAE < 1
    assert report.dm_pvalue is not None and 0 <= report.dm_pvalue <= 1
    assert report.beats_naive == (report.dm_stat < 0 and report.dm_pvalue < 0.05) or (
        report.dm_stat_1 > 0 and report.dm_pvalue_1 < 0.05
    )
    assert report.verdict == ("beats naive" if report.beats_naive else "no better than naive")
    table = report.side_by_side()
    assert list(table.index) == ["model", "naive", "seasonal_naive"]
    assert {
        "mae", "rmse", "rmae", "mase", "directional_accuracy", "coverage_80", "coverage_95"
    } <= set(table.columns)  # fmt: skip


def test_model_beats_naive_on_a_seasonal_series():
    frame = seasonal()
    cfg = default_config(
        "H1", len(frame), max_steps=150, mlp_units=64, val_check_steps=25, input_size=48
    )
    _, report = fit_and_evaluate(frame, cfg)
    assert report.model.rmae < 1.0 and report.beats_naive and report.verdict == "beats naive"
    assert report.dm_stat < 0 and report.dm_pvalue < 0.05 and report.n_origins > 100
    assert report.seasonal_naive.rmae < 1.0  # the baseline also sees the season


def test_malformed_frames_and_reserved_trainer_options_are_refused():
    frame = seasonal(200)
    cfg = default_config("H1", len(frame), input_size=24, **TINY)
    two = pd.concat([frame, frame.assign(unique_id="OTHER")], ignore_index=True)
    with pytest.raises(InvalidInputError, match="one unique_id"):
        fit(two, cfg)
    with pytest.raises(InvalidInputError, match="finite y"):
        fit(frame.assign(y=frame["y"].where(frame.index != 5)), cfg)
    with pytest.raises(InvalidInputError, match="max_steps"):
        fit(frame, cfg, trainer_kwargs={"max_steps": 5})


def test_future_timestamps_skip_weekends_only_when_history_does():
    weekdays = pd.Series(pd.bdate_range("2024-01-01", periods=10, tz="UTC"))
    # after Fri 12 Jan: Mon..Wed
    assert list(future_timestamps(weekdays, 3).day_of_week) == [0, 1, 2]
    crypto = pd.Series(pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC"))
    assert list(future_timestamps(crypto, 2).day) == [11, 12]


def test_future_timestamps_of_fx_hours_skip_the_fx_weekend():
    from backtesting.test import EURUSD

    ds = frame_of("EURUSD", EURUSD)["ds"]
    friday_close = ds[ds.dt.day_of_week == 4].iloc[-1]  # the last bar before a weekend
    nxt = future_timestamps(ds[ds <= friday_close], 3)
    resumed = ds[ds > friday_close].iloc[0]  # 22:00 in winter, 21:00 in summer (UTC)
    assert nxt[0].day_of_week == 6 and abs(nxt[0] - resumed) <= pd.Timedelta(hours=1)
    assert list(np.diff(nxt.asi8)) == [3_600_000_000] * 2


def test_direct_batched_inference_matches_neuralforecast_predict():
    from backtesting.test import EURUSD

    frame = frame_of("EURUSD", EURUSD)
    cfg = default_config("H1", len(frame), **TINY)
    model, _ = fit_and_evaluate(frame, cfg)
    earlier = frame.iloc[:-7]
    direct = model.predict_many([frame, earlier])
    for got, f in zip(direct, [frame, earlier], strict=True):
        ref = model.predict_reference(f)
        np.testing.assert_allclose(got[BANDS], ref[BANDS], rtol=1e-4)
        assert (got["ds"] == ref["ds"]).all()


def test_rolling_forecasts_match_one_by_one_prediction_from_each_origin():
    from kitrade.training.evaluation import rolling_forecasts

    frame = random_walk(300)
    cfg = default_config("H1", None, input_size=24, horizon=4, cv_windows=40, step_size=3, **TINY)
    model, report = fit_and_evaluate(frame, cfg)
    cv = rolling_forecasts(model, frame)
    cutoffs = np.unique(cv["cutoff"])
    assert len(cutoffs) == report.n_origins == 40 and set(np.diff(cutoffs)) == {3}
    assert cutoffs[-1] == len(frame) - cfg.horizon - 1  # the last origin ends at the last bar
    assert cutoffs[0] == len(frame) - cfg.test_size - 1  # the first is the last training bar
    for c in cutoffs[[0, 17, -1]]:
        one = model.predict(frame.iloc[: c + 1])
        got = cv[cv["cutoff"] == c]
        np.testing.assert_allclose(got["NHITS-median"], one["mean"], rtol=1e-5)
        np.testing.assert_allclose(got["y"], frame["y"].to_numpy()[c + 1 : c + 5])


def test_naive_test_claims_beating_naive_only_when_significant():
    from kitrade.training.evaluation import naive_test

    rng = np.random.default_rng(3)
    cutoffs = np.repeat(np.arange(200), 2)
    steps = np.tile([1, 2], 200)
    naive = rng.normal(0, 1, 400)
    # errors a hair smaller than naive's: rMAE < 1, but noise decides -> no claim
    noisy = rng.normal(0, 0.97, 400)
    assert np.mean(np.abs(noisy)) < np.mean(np.abs(naive))
    out = naive_test(cutoffs, steps, noisy, naive)
    assert not out["beats_naive"] and out["verdict"] == "no better than naive"
    assert out["dm_pvalue"] > 0.05
    # clearly smaller errors at every origin: significant
    out = naive_test(cutoffs, steps, naive * 0.5, naive)
    assert out["beats_naive"] and out["verdict"] == "beats naive" and out["dm_stat"] < 0
    # better over the horizon but significantly worse one step ahead: no claim
    worse_first = np.where(steps == 1, naive * 1.6, naive * 0.05)
    out = naive_test(cutoffs, steps, worse_first, naive)
    assert out["dm_stat"] < 0 and out["dm_stat_1"] > 0 and out["dm_pvalue_1"] < 0.05
    assert not out["beats_naive"]


def test_log_return_target_forecasts_price_levels_that_match_neuralforecast(tmp_path):
    """``target="log_return"``: the network sees log prices (cumulative log returns once its
    window scaler removes the level); the answer is back in prices, equal to neuralforecast's
    own predict on the log series mapped through ``exp``, and the artifact keeps the target."""
    frame = random_walk(400)
    cfg = default_config("H1", len(frame), **TINY, target="log_return", cv_windows=20)
    model = fit(frame, cfg)
    ours = model.predict_many([frame])[0]
    ref = model.predict_reference(frame)
    np.testing.assert_allclose(ours[BANDS], ref[BANDS], rtol=1e-4)
    assert_bands_ordered(ours)
    last = frame["y"].iloc[-1]
    assert abs(ours["mean"].iloc[0] / last - 1) < 0.1  # a price near the last one, not a log
    model.save(tmp_path / "m")
    again = FittedModel.load(tmp_path / "m")
    assert again.config.target == "log_return"
    np.testing.assert_allclose(again.predict_many([frame])[0][BANDS], ours[BANDS], rtol=1e-6)


def test_log_return_target_refuses_prices_at_or_below_zero():
    frame = random_walk(400)
    frame.loc[10, "y"] = -1.0
    cfg = default_config("H1", len(frame), **TINY, target="log_return", cv_windows=20)
    with pytest.raises(InvalidInputError, match="target log_return: expected prices > 0"):
        fit(frame, cfg)
