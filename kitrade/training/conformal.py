"""Calibrated bands: conformalized quantile regression kept calibrated by adaptive conformal
inference.

Pure numpy; no model, no Ray, no database. A forecast's raw 80 / 95 % band ``[lo, hi]`` at
step ``j`` is widened (or narrowed) on each side by ``factor * (hi - lo) / 2``, where
``factor`` is a conformal quantile of the step's recent conformity scores

    score = max(lo - y, y - hi) / ((hi - lo) / 2)

(how far the actual fell outside the band, in half-widths; negative inside it). This is
conformalized quantile regression (Romano, Patterson & Candes 2019) with scores scaled by the
band's own half-width, so the band keeps the shape the network gave it (wider when it expects
more risk) and a price level that moves does not stale the scores. The quantile taken is the
``ceil((1 - alpha) (n + 1))``-th smallest of the ``n`` scores.

Adaptive conformal inference (Gibbs & Candes 2021) keeps it calibrated as the market moves:
each time a bar closes step ``j`` of an earlier forecast, that step's level is updated
``alpha_j <- alpha_j + gamma * (nominal miss rate - missed)``, where ``missed`` says whether
the actual fell outside the band the current factor gives, and the new score joins the
step's window of the ``window`` most recent scores. A run of misses lowers ``alpha_j`` (a
higher quantile, wider bands); a run of hits raises it.

Point in time: a band formed at origin ``c`` uses only scores whose actual is at or before
``c`` (``sequential``), and ``advance`` takes in bars in time order, so a backtest or an
evaluation that calibrates this way never sees a later bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kitrade.schemas.quality import CalibrationSummary, LevelCalibration

__all__ = [
    "LEVELS",
    "METHOD",
    "ConformalState",
    "advance",
    "calibrated",
    "conformity",
    "sequential",
]

#: band level -> (its raw band's columns, nominal coverage)
LEVELS: dict[str, tuple[str, str, float]] = {
    "80": ("lo_80", "hi_80", 0.8),
    "95": ("lo_95", "hi_95", 0.95),
}
METHOD = "conformalized quantile regression (scaled by band half-width) + adaptive conformal"
_TINY = 1e-12


def _half_width(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(lo), np.abs(hi))
    return np.maximum((hi - lo) / 2.0, _TINY * np.maximum(scale, 1.0))


def conformity(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far each actual fell outside its band, in half-widths (negative: inside)."""
    return np.maximum(lo - y, y - hi) / _half_width(lo, hi)


def _quantile(scores: list[float], alpha: float) -> float:
    """The ``ceil((1 - alpha)(n + 1))``-th smallest score (the largest or smallest past the
    ends; 0 with no scores: the raw band)."""
    n = len(scores)
    if n == 0:
        return 0.0
    k = min(max(math.ceil((1.0 - alpha) * (n + 1)), 1), n)
    return float(np.partition(np.asarray(scores), k - 1)[k - 1])


@dataclass
class ConformalState:
    """Per band level and forecast step: the recent scores and the current level.

    Attributes:
        horizon: Steps of the forecasts it calibrates.
        gamma: ACI step size.
        window: Most recent scores kept per level and step.
        alpha: Level -> per-step miscoverage level.
        scores: Level -> per-step recent scores, oldest first.
        issued: Level -> the per-step factors in effect at each of the last ``horizon``
            cutoffs, oldest first, the last at ``through`` (ACI judges an outcome by the band
            that was issued for it, not by today's).
        updates: Outcomes taken in with ACI updates.
        through: Last bar (ISO timestamp) whose outcome was taken in, when known.
    """

    horizon: int
    gamma: float = 0.005
    window: int = 500
    alpha: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, list[list[float]]] = field(default_factory=dict)
    issued: dict[str, list[list[float]]] = field(default_factory=dict)
    updates: int = 0
    through: str | None = None
    _factors: dict[str, list[float | None]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key, (_, _, nominal) in LEVELS.items():
            self.alpha.setdefault(key, [1.0 - nominal] * self.horizon)
            self.scores.setdefault(key, [[] for _ in range(self.horizon)])
            self.issued.setdefault(key, [])
            self._factors[key] = [None] * self.horizon

    def factor(self, level: str, step: int) -> float:
        """The current widening factor of ``level``'s band at ``step`` (1-based)."""
        cached = self._factors[level][step - 1]
        if cached is None:
            cached = _quantile(self.scores[level][step - 1], self.alpha[level][step - 1])
            self._factors[level][step - 1] = cached
        return cached

    def factors(self, level: str) -> np.ndarray:
        """``factor`` of every step of ``level``."""
        return np.array([self.factor(level, j) for j in range(1, self.horizon + 1)])

    def issued_factor(self, level: str, step: int, back: int) -> float:
        """The factor of ``step`` issued ``back`` cutoffs before the latest snapshot (0: the
        latest); today's factor when that snapshot is no longer kept."""
        kept = self.issued[level]
        return kept[-1 - back][step - 1] if back < len(kept) else self.factor(level, step)

    def snapshot(self) -> None:
        """Record the factors now in effect as those issued at the newest cutoff."""
        for key in LEVELS:
            self.issued[key].append([float(f) for f in self.factors(key)])
            del self.issued[key][: max(0, len(self.issued[key]) - self.horizon)]

    def take_in(
        self, step: int, scores: Mapping[str, float], missed: Mapping[str, bool] | None = None
    ) -> None:
        """One outcome of ``step``: each level's score joins its window; given whether the
        band issued for it ``missed``, ACI moves the level."""
        for key, (_, _, nominal) in LEVELS.items():
            j = step - 1
            if missed is not None:
                self.alpha[key][j] += self.gamma * ((1.0 - nominal) - float(missed[key]))
            window = self.scores[key][j]
            window.append(float(scores[key]))
            if len(window) > self.window:
                del window[: len(window) - self.window]
            self._factors[key][j] = None
        if missed is not None:
            self.updates += 1

    def apply(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated bands for forecasts ``raw`` (``mean, lo_80 … hi_95``, rows x steps)."""
        return calibrated(raw, {k: self.factors(k) for k in LEVELS})

    def summary(self) -> CalibrationSummary:
        """What the forecast answer and the model table say of this calibration."""
        levels = {
            key: LevelCalibration(
                nominal=nominal,
                alpha=[round(a, 6) for a in self.alpha[key]],
                factor=[round(float(f), 6) for f in self.factors(key)],
                n_scores=[len(s) for s in self.scores[key]],
            )
            for key, (_, _, nominal) in LEVELS.items()
        }
        return CalibrationSummary(
            method=METHOD,
            gamma=self.gamma,
            window=self.window,
            updates=self.updates,
            through=self.through,
            levels=levels,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (``from_json`` reads it back)."""
        return {
            "horizon": self.horizon,
            "gamma": self.gamma,
            "window": self.window,
            "alpha": self.alpha,
            "scores": {k: [[round(s, 7) for s in w] for w in v] for k, v in self.scores.items()},
            "issued": self.issued,
            "updates": self.updates,
            "through": self.through,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConformalState:
        """The state ``to_json`` wrote."""
        return cls(
            horizon=int(data["horizon"]),
            gamma=float(data["gamma"]),
            window=int(data["window"]),
            alpha={k: [float(a) for a in v] for k, v in data["alpha"].items()},
            scores={k: [list(map(float, w)) for w in v] for k, v in data["scores"].items()},
            issued={k: [list(map(float, w)) for w in v] for k, v in data["issued"].items()},
            updates=int(data.get("updates", 0)),
            through=data.get("through"),
        )


def calibrated(raw: Mapping[str, Any], factors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``raw`` bands widened by ``factors`` (level -> per step) half-widths on each side.

    A factor below -1 would turn a band inside out: it stops at -1 (the band's midpoint).
    The 80 % band keeps the median inside it and the 95 % band keeps the 80 % band inside it.
    """
    out = {"mean": np.asarray(raw["mean"], dtype="float64")}
    for key, (lo_col, hi_col, _) in LEVELS.items():
        lo = np.asarray(raw[lo_col], dtype="float64")
        hi = np.asarray(raw[hi_col], dtype="float64")
        f = np.maximum(np.asarray(factors[key], dtype="float64"), -1.0)
        half = _half_width(lo, hi)
        out[lo_col], out[hi_col] = lo - f * half, hi + f * half
    out["lo_80"] = np.minimum(out["lo_80"], out["mean"])
    out["hi_80"] = np.maximum(out["hi_80"], out["mean"])
    out["lo_95"] = np.minimum(out["lo_95"], out["lo_80"])
    out["hi_95"] = np.maximum(out["hi_95"], out["hi_80"])
    return out


def _point_scores(raw: Mapping[str, np.ndarray], actual: np.ndarray) -> dict[str, np.ndarray]:
    """Every point's conformity score per level (NaN where the actual is unknown)."""
    return {
        key: conformity(actual, np.asarray(raw[lo]), np.asarray(raw[hi]))
        for key, (lo, hi, _) in LEVELS.items()
    }


def sequential(
    raw: Mapping[str, np.ndarray],
    actual: np.ndarray,
    cutoffs: np.ndarray,
    *,
    calibration_origins: int,
    state: ConformalState,
) -> dict[str, np.ndarray]:
    """Calibrated bands of every origin, each formed from what was known at its cutoff.

    Bar by bar from the first cutoff to the last actual: the outcomes that bar closes are
    taken in (those closing at or after the first scoring origin, index
    ``calibration_origins``, also move ACI's levels, judged by the band issued for them;
    earlier ones only fill the windows), then the factors in effect are recorded as issued at
    that bar, and an origin whose cutoff it is gets its band from them. So origin ``k`` uses
    only outcomes ``(i, j)`` with ``c_i + j <= c_k``, and ``state`` ends calibrated through
    the last actual: ready to serve from there and to ``advance``.

    Args:
        raw: ``mean, lo_80, hi_80, lo_95, hi_95``, each ``(origins, horizon)``.
        actual: ``(origins, horizon)``: what happened (NaN: not known in the data).
        cutoffs: Each origin's last bar (positions, ascending).
        calibration_origins: Leading origins that only calibrate.
        state: Updated in place.

    Returns:
        The calibrated bands, ``(origins, horizon)`` each.
    """
    y_at = np.asarray(actual, dtype="float64")
    k_total, h = y_at.shape
    cut = np.asarray(cutoffs, dtype="int64")
    scores = _point_scores(raw, y_at)
    closing: dict[int, list[tuple[int, int]]] = {}
    for i, j in zip(*np.nonzero(np.isfinite(y_at)), strict=True):
        closing.setdefault(int(cut[i]) + int(j) + 1, []).append((int(i), int(j)))
    adapt_from = int(cut[calibration_origins]) if calibration_origins < k_total else None
    origin_at = {int(c): k for k, c in enumerate(cut)}
    out = {k: np.empty((k_total, h)) for k in ("mean", "lo_80", "hi_80", "lo_95", "hi_95")}
    last = max(closing) if closing else int(cut[-1])
    for t in range(int(cut[0]), last + 1):
        adapt = adapt_from is not None and t >= adapt_from
        for i, j in closing.get(t, ()):
            point = {key: float(scores[key][i, j]) for key in LEVELS}
            back = t - int(cut[i])  # cutoffs since origin i's, i.e. j + 1
            missed = {key: point[key] > state.issued_factor(key, j + 1, back) for key in LEVELS}
            state.take_in(j + 1, point, missed if adapt else None)
        state.snapshot()
        k = origin_at.get(t)
        if k is not None:
            row = state.apply({key: np.asarray(v)[k] for key, v in raw.items()})
            for key, v in row.items():
                out[key][k] = v
    return out


def advance(
    state: ConformalState,
    y: np.ndarray,
    first_new: int,
    raw_for: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    *,
    min_cutoff: int = 0,
) -> int:
    """Take in, bar by bar and with ACI updates, every outcome the bars ``y[first_new:]``
    close: step ``j`` of the forecast made at cutoff ``t - j`` for each new bar ``t``, judged
    by the band issued then (``state.issued``).

    Args:
        state: Calibrated through bar ``first_new - 1``; updated in place.
        y: The series, old bars and new.
        first_new: Position of the first bar not taken in yet.
        raw_for: Cutoffs -> the raw bands of the forecasts made there
            (``mean, lo_80 … hi_95``, each ``(len(cutoffs), horizon)``).
        min_cutoff: The first cutoff a forecast can be made from (``input_size - 1``).

    Returns:
        Outcomes taken in.
    """
    h, n = state.horizon, len(y)
    first = max(first_new - h, min_cutoff)
    if first_new >= n or first >= n - 1:
        return 0
    cutoffs = np.arange(first, n - 1)
    raw = raw_for(cutoffs)
    closes = cutoffs[:, None] + np.arange(1, h + 1)[None, :]
    values = np.asarray(y, dtype="float64")[np.minimum(closes, n - 1)]
    scores = _point_scores(raw, np.where(closes < n, values, np.nan))
    taken = 0
    for t in range(max(first_new, first + 1), n):
        for j in range(1, h + 1):
            i = t - j - first
            if i < 0:
                continue
            point = {key: float(scores[key][i, j - 1]) for key in LEVELS}
            # the snapshot of cutoff t - j is j - 1 back from the latest (cutoff t - 1)
            missed = {key: point[key] > state.issued_factor(key, j, j - 1) for key in LEVELS}
            state.take_in(j, point, missed)
            taken += 1
        state.snapshot()
    return taken
