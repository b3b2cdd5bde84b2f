"""The baseline zoo: forecasts NHITS is scored against on the same rolling origins.

Each baseline gives, at every origin, a median (the ``mean`` key, as NHITS's answer names it)
and 80 % and 95 % bands for ``horizon`` steps. Everything is point in time: parameters are
estimated on the training part ``y[:train_end]`` only, and an origin ``c`` reads no bar after
``y[c]`` (``tests/training/test_baselines.py`` changes every later bar and checks that
nothing moves).

- ``rw_empirical``: the random walk ``y[c]`` with the empirical 2.5/10/90/97.5 % quantiles of
  the training part's ``j``-step changes ``y[t+j] - y[t]`` (the last ``EMPIRICAL_WINDOW``
  origins of it) added per step.
- ``rw_garch``: the random walk with GARCH(1,1) bands (the ``arch`` package, zero mean, normal
  innovations) on log returns; see ``_rw_garch``.
- ``auto_ets``: statsforecast's ``AutoETS`` fitted once, then run forward from every origin
  with those parameters, with its own prediction intervals; see ``_auto_ets``.
- ``seasonal_naive``: ``y[c + j - s * ceil(j / s)]`` with its own empirical error quantiles
  per step, as ``rw_empirical``.

A band that would not contain the median (a trending training part can put all of the
empirical changes on one side of zero) is stretched to it, and the 95 % band to the 80 %
band, so ``lo_95 <= lo_80 <= mean <= hi_80 <= hi_95`` at every point.

Time for 250 origins x 24 steps on the 5,000 EURUSD hourly closes that ship with
``backtesting`` (``train_end`` 4,727, ``season_length`` 24), CPU seconds of one thread
(``time.process_time``, median of three calls after a first one in the process)::

    rw_empirical 0.001 · rw_garch 0.027 (first call 1.3: importing arch) ·
    auto_ets 2.9 (2.8 of it the one fit on 4,727 bars; the 250 forwards take about 0.1) ·
    seasonal_naive 0.001

(AutoETS is now fitted on the last ``ETS_FIT_WINDOW`` = 1,000 training bars: about a fifth
of that fit.)

measured with ``baseline_forecasts(y, np.arange(4726, 4976), 24, train_end=4727,
season_length=24, names=(name,))``. On the shared two-core development machine under a load
of 8 the wall time of auto_ets was 10.9 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np

from kitrade.errors import InvalidInputError, TooShortError

__all__ = [
    "BAND_KEYS",
    "BASELINES",
    "EMPIRICAL_WINDOW",
    "ETS_FIT_WINDOW",
    "ETS_MAX_SEASON",
    "GARCH_MIN_RETURNS",
    "baseline_forecasts",
]

BASELINES: tuple[str, ...] = ("rw_empirical", "rw_garch", "auto_ets", "seasonal_naive")
#: the arrays each baseline returns, each ``(len(cutoffs), horizon)``
BAND_KEYS: tuple[str, ...] = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")
#: training origins whose h-step changes (or errors) give the empirical bands
EMPIRICAL_WINDOW = 2000
#: AutoETS is fitted on at most this many of the last training bars: its fit grows linearly
#: with the series (on EURUSD H1, 24-bar season, a loaded 2-core machine: 16 s for 4,750
#: bars, 4.3 s for 2,000, 2.4 s for 1,000); a thousand bars set its smoothing well enough
ETS_FIT_WINDOW = 1000
#: the longest season AutoETS models; longer ones are left out, as R's ``forecast::ets``
#: (which statsforecast mirrors) does for frequencies above 24
ETS_MAX_SEASON = 24
#: GARCH needs this many training returns; it also keeps ``arch``'s backcast (an average
#: of the first 75 squared returns that starts the variance recursion) inside the training part
GARCH_MIN_RETURNS = 100

# Empirical quantiles in the order lo_95, lo_80, hi_80, hi_95.
_PROBS = (0.025, 0.10, 0.90, 0.975)
# Standard normal quantiles in the same order.
_Z = tuple(NormalDist().inv_cdf(p) for p in _PROBS)

Bands = dict[str, np.ndarray]


def baseline_forecasts(
    y: np.ndarray,
    cutoffs: np.ndarray,
    horizon: int,
    *,
    train_end: int,
    season_length: int,
    names: Sequence[str] = BASELINES,
) -> dict[str, dict[str, np.ndarray]]:
    """Every named baseline's median and 80/95 % bands from every origin.

    Args:
        y: The whole series (float64), positions ``0..n-1``.
        cutoffs: Integer positions of the forecast origins (the last bar each one sees),
            ascending, each in ``[train_end - 1, n - 1]``.
        horizon: Steps forecast from each origin.
        train_end: Bars ``[0, train_end)`` are the training part, the only bars any
            parameter is estimated on.
        season_length: Bars per season (seasonal naive; AutoETS's season where
            ``2 <= season_length <= ETS_MAX_SEASON``).
        names: The baselines to compute, a subset of ``BASELINES``.

    Returns:
        Per baseline name: ``{"mean", "lo_80", "hi_80", "lo_95", "hi_95"}``, each an array
        of shape ``(len(cutoffs), horizon)``; row ``i`` is the forecast from ``cutoffs[i]``,
        column ``j - 1`` the one for bar ``cutoffs[i] + j``.

    Raises:
        InvalidInputError: An argument is out of range, ``y`` is not finite, or a name is
            not a baseline.
        TooShortError: The training part is too short for a baseline asked for.
    """
    series, origins = _checked(y, cutoffs, horizon, train_end, season_length, names)
    return {
        name: _BUILDERS[name](series, origins, horizon, train_end, season_length) for name in names
    }


def _checked(
    y: np.ndarray,
    cutoffs: np.ndarray,
    horizon: int,
    train_end: int,
    season_length: int,
    names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as float64 and ``cutoffs`` as int64, after checking every argument."""
    series = np.asarray(y, dtype="float64")
    origins = np.asarray(cutoffs, dtype="int64")
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise InvalidInputError(f"expected baselines among {BASELINES}, was {unknown}")
    if series.ndim != 1 or not np.all(np.isfinite(series)):
        raise InvalidInputError("expected a one-dimensional series of finite values")
    if horizon < 1 or season_length < 1:
        raise InvalidInputError(
            f"expected horizon and season_length >= 1, was {horizon} and {season_length}"
        )
    if not 0 < train_end <= len(series):
        raise InvalidInputError(f"expected 0 < train_end <= {len(series)}, was {train_end}")
    if train_end <= horizon:
        raise TooShortError(
            f"expected a training part longer than the horizon {horizon}, was {train_end} bars"
        )
    if origins.ndim != 1 or np.any(np.diff(origins) < 0):
        raise InvalidInputError("expected cutoffs as one ascending array of positions")
    if len(origins) and (origins[0] < train_end - 1 or origins[-1] >= len(series)):
        raise InvalidInputError(
            f"expected cutoffs in [{train_end - 1}, {len(series) - 1}], "
            f"were {origins[0]}..{origins[-1]}"
        )
    return series, origins


def _ordered(
    mean: np.ndarray, lo80: np.ndarray, hi80: np.ndarray, lo95: np.ndarray, hi95: np.ndarray
) -> Bands:
    """The bands stretched where needed so that ``lo_95 <= lo_80 <= mean <= hi_80 <= hi_95``.

    The median is kept as the baseline defines it; only a band that would leave it out
    (or a 95 % band inside the 80 % one) moves.
    """
    lo_80 = np.minimum(lo80, mean)
    hi_80 = np.maximum(hi80, mean)
    return {
        "mean": mean,
        "lo_80": lo_80,
        "hi_80": hi_80,
        "lo_95": np.minimum(lo95, lo_80),
        "hi_95": np.maximum(hi95, hi_80),
    }


def _with_offsets(mean: np.ndarray, offsets: np.ndarray) -> Bands:
    """``mean`` plus per-step offsets ``(horizon, 4)`` in the order lo_95, lo_80, hi_80, hi_95."""
    lo95, lo80, hi80, hi95 = (mean + offsets[:, k] for k in range(4))
    return _ordered(mean, lo80, hi80, lo95, hi95)


def _seasonal_source(origins: np.ndarray, step: int, season: int) -> np.ndarray:
    """Positions the seasonal naive forecasts of ``origins + step`` copy.

    The same bar one season back (``origin + step - season * ceil(step / season)``), or the
    origin's own bar where that lies before the series (the random walk's forecast).
    """
    back = origins + step - season * math.ceil(step / season)
    return np.where(back >= 0, back, origins)


def _empirical_offsets(
    y: np.ndarray, train_end: int, horizon: int, source: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """Per step, the 2.5/10/90/97.5 % quantiles of a forecaster's training-part errors.

    ``source(t, j)`` gives the positions whose values the forecaster from origins ``t``
    copies for ``t + j``. The origins are those with ``t + j < train_end``, the last
    ``EMPIRICAL_WINDOW`` of them (``train_end > horizon`` leaves at least one per step).

    Returns:
        ``(horizon, 4)`` quantiles in the order lo_95, lo_80, hi_80, hi_95.
    """
    out = np.empty((horizon, len(_PROBS)))
    for j in range(1, horizon + 1):
        t = np.arange(max(0, train_end - j - EMPIRICAL_WINDOW), train_end - j)
        out[j - 1] = np.quantile(y[t + j] - y[source(t, j)], _PROBS)
    return out


def _rw_empirical(
    y: np.ndarray, cutoffs: np.ndarray, horizon: int, train_end: int, season_length: int
) -> Bands:
    """The random walk with the training part's empirical h-step change quantiles."""
    offsets = _empirical_offsets(y, train_end, horizon, lambda t, j: t)
    mean = np.repeat(y[cutoffs][:, None], horizon, axis=1)
    return _with_offsets(mean, offsets)


def _seasonal_naive(
    y: np.ndarray, cutoffs: np.ndarray, horizon: int, train_end: int, season_length: int
) -> Bands:
    """The bar one season back (``y[c]`` before the series starts), with empirical bands."""

    def source(t: np.ndarray, j: int) -> np.ndarray:
        return _seasonal_source(t, j, season_length)

    offsets = _empirical_offsets(y, train_end, horizon, source)
    mean = np.empty((len(cutoffs), horizon))
    for j in range(1, horizon + 1):
        mean[:, j - 1] = y[source(cutoffs, j)]
    return _with_offsets(mean, offsets)


def _rw_garch(
    y: np.ndarray, cutoffs: np.ndarray, horizon: int, train_end: int, season_length: int
) -> Bands:
    """The random walk with GARCH(1,1) bands.

    A zero-mean GARCH(1,1) with normal innovations is fitted by ``arch`` on the training
    part's returns: log returns times 100, times the power of ten ``arch`` rescales by so
    that their variance lies between 1 and 1,000 (``scale`` is the product). The conditional
    variance is then filtered through the series with those fixed parameters
    (``model.fix``). The recursion reads only earlier returns, so origin ``c``'s variance
    forecasts (from the last return it sees, ``y[c-1] -> y[c]``) use nothing after ``y[c]``;
    ``arch`` does clip the filtered variance to safety bounds set from all the returns it is
    given, but they lie six orders of magnitude around a running average of the squared
    returns and never bind for a fitted GARCH. The h-step cumulative return variance is the
    sum of the per-step forecast variances, the median ``y[c]`` and the bands
    ``y[c] * exp(z * sqrt(cumulative variance) / scale)`` with standard normal quantiles
    ``z``. Normal innovations make the one-step band exact under the model, and a sum of
    many steps tends to normal whatever the innovations.

    Where the training part is not all positive there are no log returns: the returns are
    then differences and the bands ``y[c] + z * sqrt(cumulative variance) / scale``.
    """
    log = bool(np.all(y[:train_end] > 0))
    if log and not np.all(y > 0):
        raise InvalidInputError(
            "expected a positive series after a positive training part (log returns)"
        )
    returns = np.diff(np.log(y)) if log else np.diff(y)
    scale, params = _garch_fit(returns[: train_end - 1])
    cum_var = _garch_cumulative_variance(returns * scale, params, cutoffs, horizon)
    spread = np.sqrt(cum_var) / scale
    last = y[cutoffs][:, None]
    mean = np.repeat(last, horizon, axis=1)
    if log:
        lo95, lo80, hi80, hi95 = (last * np.exp(z * spread) for z in _Z)
    else:
        lo95, lo80, hi80, hi95 = (last + z * spread for z in _Z)
    return _ordered(mean, lo80, hi80, lo95, hi95)


def _garch_fit(train_returns: np.ndarray) -> tuple[float, np.ndarray]:
    """``(scale, params)`` of a zero-mean normal GARCH(1,1) fitted on ``scale * returns``."""
    # arch brings statsmodels and scipy's optimisers: imported only when this baseline runs.
    from arch import arch_model

    if len(train_returns) < GARCH_MIN_RETURNS:
        raise TooShortError(
            f"expected at least {GARCH_MIN_RETURNS} training returns for GARCH, "
            f"was {len(train_returns)}"
        )
    if not np.any(train_returns != 0):
        raise InvalidInputError("expected a training part that moves (GARCH on flat returns)")
    model = arch_model(
        100.0 * train_returns, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=True
    )
    result = model.fit(disp="off")
    return 100.0 * float(result.scale), np.asarray(result.params, dtype="float64")


def _garch_cumulative_variance(
    scaled_returns: np.ndarray, params: np.ndarray, cutoffs: np.ndarray, horizon: int
) -> np.ndarray:
    """``(len(cutoffs), horizon)`` variances of the 1..horizon-step cumulative returns.

    Return ``i`` is ``y[i] -> y[i+1]``, so the last one origin ``c`` sees is ``c - 1``.
    """
    from arch import arch_model  # heavy, as in _garch_fit

    if not len(cutoffs):
        return np.empty((0, horizon))
    # Returns after the last origin's are of no use to any origin: leave them out.
    seen = scaled_returns[: int(cutoffs[-1])]
    model = arch_model(seen, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    fixed = model.fix(params)
    first = int(cutoffs[0]) - 1
    variance = fixed.forecast(horizon=horizon, start=first, reindex=False).variance
    per_step = variance.to_numpy(dtype="float64")[cutoffs - 1 - first]
    return np.cumsum(per_step, axis=1)


def _auto_ets(
    y: np.ndarray, cutoffs: np.ndarray, horizon: int, train_end: int, season_length: int
) -> Bands:
    """statsforecast's AutoETS, fitted once and run forward from every origin.

    The model (its form, smoothing parameters and initial states) is chosen and fitted on
    the last ``ETS_FIT_WINDOW`` training bars; at each origin ``AutoETS.forward`` runs that
    model through the bars from the window's start up to ``y[c]`` and forecasts from the
    state it reaches, with the model's own 80/95 % intervals. As statsforecast's ``forward``
    (and ``cross_validation(refit=False)``) does, the residual variance behind the
    intervals is recomputed on those bars: it is point in time, but it does see the
    evaluation bars before the origin. The season is used where
    ``2 <= season_length <= ETS_MAX_SEASON`` and the window holds two seasons.
    """
    # statsforecast compiles its models with numba: imported only when this baseline runs.
    from statsforecast.models import AutoETS

    start = max(0, train_end - ETS_FIT_WINDOW)
    window = train_end - start
    seasonal = 2 <= season_length <= ETS_MAX_SEASON and window >= 2 * season_length
    try:
        model = AutoETS(season_length=season_length if seasonal else 1).fit(y[start:train_end])
    except NotImplementedError as exc:  # statsforecast's "tiny datasets"
        raise TooShortError(f"expected more bars for AutoETS, was {window}: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"AutoETS could not be fitted on {window} bars: {exc}") from exc
    bands = {k: np.empty((len(cutoffs), horizon)) for k in BAND_KEYS}
    for i, c in enumerate(cutoffs):
        fc = model.forward(y[start : c + 1], horizon, level=[80, 95])
        bands["mean"][i] = fc["mean"]
        for k in BAND_KEYS[1:]:
            bands[k][i] = fc[k.replace("_", "-")]
    return _ordered(bands["mean"], bands["lo_80"], bands["hi_80"], bands["lo_95"], bands["hi_95"])


_BUILDERS: dict[str, Callable[[np.ndarray, np.ndarray, int, int, int], Bands]] = {
    "rw_empirical": _rw_empirical,
    "rw_garch": _rw_garch,
    "auto_ets": _auto_ets,
    "seasonal_naive": _seasonal_naive,
}
