"""Calibrated bands: nominal coverage where raw bands miss, point in time, ACI moving levels."""

from __future__ import annotations

import numpy as np
import pytest

from kitrade.training import conformal, scores


def _series(n: int, seed: int) -> np.ndarray:
    """A random walk whose noise is known and heteroscedastic: its scale follows the hour of
    a 24-bar day (0.2 .. 1.8)."""
    rng = np.random.default_rng(seed)
    vol = 1.0 + 0.8 * np.sin(np.arange(n) * 2 * np.pi / 24)
    return 100.0 + np.cumsum(rng.normal(size=n) * vol)


def _constant_variance_bands(y: np.ndarray, cutoffs: np.ndarray, h: int) -> dict:
    """What a model that assumes constant (and too small) noise emits: the last value as
    median, bands from 0.7 x sqrt(step)."""
    sd = 0.7 * np.sqrt(np.arange(1, h + 1))[None, :] * np.ones((len(cutoffs), 1))
    mean = y[cutoffs][:, None] * np.ones((1, h))
    return {
        "mean": mean,
        "lo_80": mean - 1.2816 * sd,
        "hi_80": mean + 1.2816 * sd,
        "lo_95": mean - 1.96 * sd,
        "hi_95": mean + 1.96 * sd,
    }


def _coverage(bands: dict, actual: np.ndarray, rows: slice, h: int) -> tuple[float, float]:
    steps = np.tile(np.arange(1, h + 1), actual[rows].shape[0])
    s = scores.prob_scores(
        actual[rows].reshape(-1), steps, {k: v[rows].reshape(-1) for k, v in bands.items()}, h
    )
    return s.coverage_80, s.coverage_95  # type: ignore[return-value]


def test_calibration_reaches_nominal_coverage_where_raw_bands_miss() -> None:
    h = 24
    y = _series(2_300, seed=7)
    cutoffs = np.arange(1_000, 1_000 + 1_276)  # 1,276 origins: 276 calibrate, 1,000 scored
    actual = y[cutoffs[:, None] + np.arange(1, h + 1)]
    raw = _constant_variance_bands(y, cutoffs, h)
    state = conformal.ConformalState(horizon=h, gamma=0.02, window=500)
    cal = conformal.sequential(raw, actual, cutoffs, calibration_origins=276, state=state)
    scored = slice(276, None)
    raw80, raw95 = _coverage(raw, actual, scored, h)
    cal80, cal95 = _coverage(cal, actual, scored, h)
    assert abs(raw80 - 0.8) > 0.1 and abs(raw95 - 0.95) > 0.1  # the raw bands miss
    assert abs(cal80 - 0.8) <= 0.03
    assert abs(cal95 - 0.95) <= 0.03


def test_no_origin_is_calibrated_with_a_later_bar() -> None:
    h = 6
    y = _series(600, seed=1)
    cutoffs = np.arange(300, 590)
    raw = _constant_variance_bands(y, cutoffs, h)
    actual = y[cutoffs[:, None] + np.arange(1, h + 1)]
    full = conformal.sequential(
        raw, actual, cutoffs, calibration_origins=100, state=conformal.ConformalState(horizon=h)
    )
    k = 200
    cut = cutoffs[k]
    # every bar after origin k's cutoff replaced by nonsense
    later = cutoffs[:, None] + np.arange(1, h + 1) > cut
    altered = np.where(later, actual * 3.0 + 50.0, actual)
    again = conformal.sequential(
        raw, altered, cutoffs, calibration_origins=100, state=conformal.ConformalState(horizon=h)
    )
    for key in full:
        np.testing.assert_array_equal(full[key][: k + 1], again[key][: k + 1])
    assert not np.array_equal(full["hi_80"][k + h + 1 :], again["hi_80"][k + h + 1 :])


def test_a_run_of_misses_raises_the_level_and_the_state_round_trips() -> None:
    h = 3
    state = conformal.ConformalState(horizon=h, gamma=0.05, window=50)
    rng = np.random.default_rng(0)
    for _ in range(40):  # inside the band: scores below 0
        for j in range(1, h + 1):
            state.take_in(j, {"80": float(rng.uniform(-1, -0.1)), "95": -0.5})
    state.snapshot()
    before_alpha = state.alpha["80"][0]
    before = state.factor("80", 1)
    y = np.array([100.0] * 10 + [100.0 + 10 * k for k in range(1, 6)])

    def raw_for(cutoffs: np.ndarray) -> dict[str, np.ndarray]:
        mean = y[cutoffs][:, None] * np.ones((1, h))
        return {
            "mean": mean,
            "lo_80": mean - 1.0,
            "hi_80": mean + 1.0,
            "lo_95": mean - 2.0,
            "hi_95": mean + 2.0,
        }

    taken = conformal.advance(state, y, 10, raw_for, min_cutoff=0)
    assert taken == 5 * h
    assert state.alpha["80"][0] < before_alpha  # misses: a lower miscoverage level
    assert state.factor("80", 1) > before  # and wider bands
    again = conformal.ConformalState.from_json(state.to_json())
    assert again.alpha == state.alpha
    assert again.factors("80") == pytest.approx(state.factors("80"))
    assert again.issued == state.issued


def test_calibrated_bands_stay_ordered() -> None:
    raw = {
        "mean": np.array([1.0, 1.0]),
        "lo_80": np.array([0.5, 0.9]),
        "hi_80": np.array([1.5, 1.1]),
        "lo_95": np.array([0.0, 0.8]),
        "hi_95": np.array([2.0, 1.2]),
    }
    # the 80 % band narrowed hard, the 95 % band narrowed past it
    out = conformal.calibrated(raw, {"80": np.array([-5.0, -0.5]), "95": np.array([-0.99, 0.0])})
    assert (out["lo_95"] <= out["lo_80"]).all() and (out["lo_80"] <= out["mean"]).all()
    assert (out["mean"] <= out["hi_80"]).all() and (out["hi_80"] <= out["hi_95"]).all()
