"""Probabilistic forecast scores over rolling origins: coverage, interval score, pinball, width.

Pure numpy over one long layout: each row is one (origin, step) point with the actual value,
the step and a method's median and 80 / 95 % bands (``mean, lo_80, hi_80, lo_95, hi_95``).
``prob_scores`` scores one method; ``compare`` scores several on the same points, adds each
one's skill against the random walk with empirical bands and names the winner of each score.

Definitions (Gneiting & Raftery 2007):

* coverage: share of actuals inside the band (ends included);
* interval (Winkler) score of a ``1 - a`` band ``[l, u]``: ``(u - l) + 2/a * (l - y) * [y < l]
  + 2/a * (y - u) * [y > u]``, averaged; it rewards narrow bands and charges misses;
* pinball: the quantile loss ``max(q * (y - f), (q - 1) * (y - f))`` averaged over the emitted
  quantiles (2.5, 10, 50, 90, 97.5 %): a five-point approximation of the CRPS;
* calibration table: the share of actuals below each emitted quantile (a calibrated forecast
  reads 0.025, 0.1, 0.5, 0.9, 0.975).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kitrade.schemas.quality import (
    COMPARED_SCORES,
    LOWER_IS_BETTER,
    NOMINAL,
    ProbScores,
    StepScores,
)

__all__ = [
    "BANDS",
    "BASELINE_NAMES",
    "MODEL",
    "REFERENCE",
    "baselines_beating",
    "beats_on_every_score",
    "best_baseline",
    "compare",
    "dominating_baseline",
    "interval_score",
    "pinball",
    "prob_scores",
]

#: A method's forecast columns, and the quantile each one is.
BANDS: dict[str, float] = {
    "lo_95": 0.025,
    "lo_80": 0.1,
    "mean": 0.5,
    "hi_80": 0.9,
    "hi_95": 0.975,
}
#: The method every skill score is relative to.
REFERENCE = "rw_empirical"
#: The served method: NHITS with calibrated bands.
MODEL = "nhits_calibrated"
#: How the comparison names each baseline to people.
BASELINE_NAMES: dict[str, str] = {
    "rw_empirical": "random walk (empirical bands)",
    "rw_garch": "random walk with GARCH(1,1) bands",
    "auto_ets": "AutoETS",
    "seasonal_naive": "seasonal naive",
}
_SKILL = ("interval_score_80", "interval_score_95", "pinball")


def interval_score(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, nominal: float) -> np.ndarray:
    """Winkler's interval score of each point for a band meant to cover ``nominal``."""
    a = 1.0 - nominal
    return (hi - lo) + (2.0 / a) * np.maximum(lo - y, 0.0) + (2.0 / a) * np.maximum(y - hi, 0.0)


def pinball(y: np.ndarray, fc: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each point's quantile loss averaged over the emitted quantiles (``BANDS``)."""
    total = np.zeros(len(y))
    for key, q in BANDS.items():
        diff = y - fc[key]
        total += np.maximum(q * diff, (q - 1.0) * diff)
    return total / len(BANDS)


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _per_step(values: np.ndarray, steps: np.ndarray, horizon: int) -> list[float | None]:
    """Mean of ``values`` at each step 1..horizon (None where a step has no point)."""
    idx = steps.astype("int64") - 1
    count = np.bincount(idx, minlength=horizon)[:horizon]
    total = np.bincount(idx, weights=values, minlength=horizon)[:horizon]
    return [float(t / c) if c else None for t, c in zip(total, count, strict=True)]


def prob_scores(
    actual: np.ndarray, steps: np.ndarray, fc: Mapping[str, np.ndarray], horizon: int
) -> ProbScores:
    """One method's scores over the points (``actual``, ``steps`` and ``fc`` aligned).

    Args:
        actual: What happened at each point.
        steps: Each point's step ahead, 1..horizon.
        fc: ``mean, lo_80, hi_80, lo_95, hi_95`` at each point.
        horizon: The largest step (per-step lists have this length).
    """
    y = np.asarray(actual, dtype="float64")
    inside80 = ((y >= fc["lo_80"]) & (y <= fc["hi_80"])).astype("float64")
    inside95 = ((y >= fc["lo_95"]) & (y <= fc["hi_95"])).astype("float64")
    is80 = interval_score(y, fc["lo_80"], fc["hi_80"], 0.8)
    is95 = interval_score(y, fc["lo_95"], fc["hi_95"], 0.95)
    pin = pinball(y, fc)
    width80 = fc["hi_80"] - fc["lo_80"]
    return ProbScores(
        coverage_80=_mean(inside80),
        coverage_95=_mean(inside95),
        interval_score_80=_mean(is80),
        interval_score_95=_mean(is95),
        pinball=_mean(pin),
        width_80=_mean(width80),
        width_95=_mean(fc["hi_95"] - fc["lo_95"]),
        mae=_mean(np.abs(y - fc["mean"])),
        calibration={f"{q:g}": _mean((y < fc[key]).astype("float64")) for key, q in BANDS.items()},
        per_step=StepScores(
            coverage_80=_per_step(inside80, steps, horizon),
            coverage_95=_per_step(inside95, steps, horizon),
            interval_score_80=_per_step(is80, steps, horizon),
            interval_score_95=_per_step(is95, steps, horizon),
            pinball=_per_step(pin, steps, horizon),
            width_80=_per_step(width80, steps, horizon),
        ),
    )


def _winner(methods: Mapping[str, ProbScores], score: str) -> str | None:
    """The method best at ``score``: closest to nominal for coverage, lowest otherwise."""
    values = {k: getattr(m, score) for k, m in methods.items() if getattr(m, score) is not None}
    if not values:
        return None
    if score in LOWER_IS_BETTER:
        return min(values, key=lambda k: values[k])
    return min(values, key=lambda k: abs(values[k] - NOMINAL[score]))


def compare(methods: dict[str, ProbScores]) -> tuple[dict[str, ProbScores], dict[str, str]]:
    """The methods with their skill against ``REFERENCE`` filled in, and each score's winner.

    All methods must have been scored on the same points. Skill is
    ``1 - score / reference's score`` (None without the reference or where it scores 0).
    """
    ref = methods.get(REFERENCE)
    out = {}
    for name, m in methods.items():
        skill: dict[str, float | None] = {}
        for score in _SKILL:
            mine, theirs = getattr(m, score), None if ref is None else getattr(ref, score)
            ok = mine is not None and theirs is not None and theirs > 0
            skill[score] = 1.0 - mine / theirs if ok else None
        out[name] = m.model_copy(update={"skill": skill})
    winners = {s: w for s in COMPARED_SCORES if (w := _winner(out, s)) is not None}
    return out, winners


def _better(score: str, a: float, b: float) -> bool:
    """``a`` strictly better than ``b`` at ``score``: closer to nominal for coverage, lower
    otherwise."""
    if score in LOWER_IS_BETTER:
        return a < b
    return abs(a - NOMINAL[score]) < abs(b - NOMINAL[score])


def beats_on_every_score(a: ProbScores, b: ProbScores) -> bool:
    """``a`` better than ``b`` on every compared score ``b`` has (at least one); a score
    ``a`` lacks is one it does not beat ``b`` on."""
    pairs = [(s, getattr(a, s), getattr(b, s)) for s in COMPARED_SCORES]
    scored = [(s, x, y) for s, x, y in pairs if y is not None]
    return bool(scored) and all(x is not None and _better(s, x, y) for s, x, y in scored)


def baselines_beating(
    methods: Mapping[str, ProbScores], winners: Mapping[str, str], model: str = MODEL
) -> list[str]:
    """Baselines better than ``model`` (NHITS calibrated, else raw) on every compared score;
    the one that wins the most scores in ``winners`` first, then in ``BASELINE_NAMES`` order."""
    mine = methods.get(model) or methods.get("nhits")
    if mine is None:
        return []
    beating = [b for b in BASELINE_NAMES if b in methods and beats_on_every_score(methods[b], mine)]
    wins = {b: sum(1 for w in winners.values() if w == b) for b in beating}
    return sorted(beating, key=lambda b: -wins[b])


def dominating_baseline(
    methods: Mapping[str, ProbScores], winners: Mapping[str, str]
) -> str | None:
    """The first of ``baselines_beating``, or None."""
    found = baselines_beating(methods, winners)
    return found[0] if found else None


def best_baseline(
    methods: Mapping[str, ProbScores], score: str = "interval_score_80"
) -> str | None:
    """The baseline with the lowest ``score``, or None when none has it."""
    scored = {n: getattr(m, score) for n, m in methods.items() if n in BASELINE_NAMES}
    scored = {n: v for n, v in scored.items() if v is not None}
    return min(scored, key=lambda n: scored[n]) if scored else None
