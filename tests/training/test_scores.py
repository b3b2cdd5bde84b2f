"""Probabilistic scores: hand-worked values and utilsforecast's own losses on the same points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kitrade.training import scores


def _bands(mean: np.ndarray, half80: float, half95: float) -> dict[str, np.ndarray]:
    return {
        "mean": mean,
        "lo_80": mean - half80,
        "hi_80": mean + half80,
        "lo_95": mean - half95,
        "hi_95": mean + half95,
    }


def test_interval_score_worked_by_hand() -> None:
    y = np.array([0.0, 3.0, -4.0])
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    # width 2 each; y=3 is 2 above: + 2/0.2*2 = 20; y=-4 is 3 below: + 2/0.2*3 = 30
    assert scores.interval_score(y, lo, hi, 0.8).tolist() == pytest.approx([2.0, 22.0, 32.0])


def test_pinball_worked_by_hand() -> None:
    y = np.array([1.0])
    fc = {k: np.array([0.0]) for k in scores.BANDS}  # every quantile at 0, actual at 1
    # each quantile q loses q * (1 - 0); mean over the five quantiles
    expected = np.mean(list(scores.BANDS.values()))
    assert scores.pinball(y, fc)[0] == pytest.approx(expected)


def test_scores_agree_with_utilsforecast() -> None:
    from utilsforecast.losses import coverage, mqloss

    rng = np.random.default_rng(3)
    h, origins = 4, 50
    y = rng.normal(size=h * origins)
    fc = _bands(rng.normal(scale=0.3, size=h * origins), 1.0, 1.8)
    steps = np.tile(np.arange(1, h + 1), origins)
    mine = scores.prob_scores(y, steps, fc, h)
    df = pd.DataFrame(
        {
            "unique_id": "A",
            "cutoff": 0,  # one group: utilsforecast scores per (id, cutoff)
            "y": y,
            "m": fc["mean"],
            "m-lo-80": fc["lo_80"],
            "m-hi-80": fc["hi_80"],
            "m-lo-95": fc["lo_95"],
            "m-hi-95": fc["hi_95"],
        }
    )
    cov80 = coverage(df, ["m"], level=80)["m"].iloc[0]
    cov95 = coverage(df, ["m"], level=95)["m"].iloc[0]
    cols = ["m-lo-95", "m-lo-80", "m", "m-hi-80", "m-hi-95"]
    mql = mqloss(df, {"m": cols}, np.array(list(scores.BANDS.values())))["m"].iloc[0]
    assert mine.coverage_80 == pytest.approx(cov80)
    assert mine.coverage_95 == pytest.approx(cov95)
    assert mine.pinball == pytest.approx(mql)


def test_per_step_and_calibration_table() -> None:
    y = np.array([0.0, 10.0, 0.0, 10.0])
    steps = np.array([1, 2, 1, 2])
    fc = _bands(np.zeros(4), 1.0, 2.0)
    s = scores.prob_scores(y, steps, fc, 2)
    assert s.per_step.coverage_80 == [1.0, 0.0]
    assert s.coverage_80 == 0.5
    # no actual is below the median 0; the zeros (half) are below the upper quantiles, the
    # tens below none
    assert s.calibration["0.5"] == 0.0
    assert s.calibration["0.9"] == 0.5 and s.calibration["0.975"] == 0.5


def test_compare_names_winners_and_skill_against_the_random_walk() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    steps = np.ones(400, dtype=int)
    zero = np.zeros(400)
    methods = {
        "rw_empirical": scores.prob_scores(y, steps, _bands(zero, 1.28, 1.96), 1),
        "too_narrow": scores.prob_scores(y, steps, _bands(zero, 0.3, 0.5), 1),
        "too_wide": scores.prob_scores(y, steps, _bands(zero, 4.0, 6.0), 1),
    }
    scored, winners = scores.compare(methods)
    assert winners["coverage_80"] == "rw_empirical"
    assert winners["interval_score_80"] == "rw_empirical"
    assert scored["rw_empirical"].skill["interval_score_80"] == pytest.approx(0.0)
    assert scored["too_wide"].skill["interval_score_80"] < 0


def test_dominating_baseline_only_when_better_on_every_score() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    steps = np.ones(500, dtype=int)
    zero = np.zeros(500)
    good = scores.prob_scores(y, steps, _bands(zero, 1.28, 1.96), 1)
    bad = scores.prob_scores(y, steps, _bands(zero + 0.5, 0.4, 0.6), 1)
    assert scores.dominating_baseline({"nhits_calibrated": bad, "rw_garch": good}, {}) == "rw_garch"
    assert scores.dominating_baseline({"nhits_calibrated": good, "rw_garch": bad}, {}) is None
