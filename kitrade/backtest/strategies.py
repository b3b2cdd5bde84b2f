"""Strategy kinds: typed parameters in, target weights out.

Every kind turns ``(bars, forecasts)`` into a frame of target weights indexed by the union of
the symbols' bar timestamps, one column per symbol, values in [-1, 1]. The weight at bar
``t`` is decided with data up to and including bar ``t`` only: the bars' closes up to ``t``
and the forecasts issued at ``t`` (``issued_at`` = the last bar the forecast saw). The
engine fills it at the next bar's open. A symbol keeps its last decision over bars it lacks.

The forecasts' point column is named ``mean`` (the name of the stored forecasts and of the
forecast API) but holds the forecast's **median**, its 50 % quantile: NHITS is fitted with a
quantile loss, and ``drift_forecasts`` gives the log-normal median. So the "forecast return"
below is the median's return, ``median / close - 1``, not an expected (mean) return.

Kinds (``parse_strategy(kind, params)``):

* ``forecast_threshold`` — long when the forecast return (of the median) over ``horizon``
  bars exceeds ``enter``, short below ``-enter`` (with ``allow_short``), out when the forecast
  return falls back under ``exit``; ``enter_unit="cost"`` reads the thresholds as multiples
  of the symbol's round-trip cost; ``hold_bars`` is the minimum holding time.
* ``forecast_interval`` — sizes by the forecast's own uncertainty: the probability of an up
  move read from the 80 %/95 % bands, and/or volatility targeting on the 80 % width.
* ``naive_direction`` — the last bar's direction (the naive baseline signal).
* ``buy_and_hold`` and ``sma_cross`` — plain baselines that ignore the forecasts.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.stats import norm

from kitrade.backtest.engine import Costs
from kitrade.errors import InvalidInputError, describe_validation_errors

__all__ = [
    "STRATEGY_KINDS",
    "BuyAndHold",
    "ForecastInterval",
    "ForecastThreshold",
    "NaiveDirection",
    "SmaCross",
    "StrategyParams",
    "drift_forecasts",
    "expected_returns",
    "forecast_threshold_array",
    "forecast_threshold_batch",
    "issued_index",
    "naive_signal",
    "parse_strategy",
    "target_weights",
    "threshold_positions",
]

FORECAST_COLUMNS = ("symbol", "issued_at", "step", "mean", "lo_80", "hi_80", "lo_95", "hi_95")
_Z80 = float(norm.ppf(0.90))
_Z95 = float(norm.ppf(0.975))


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ForecastThreshold(_Params):
    """Enter on a large forecast return (of the median forecast), leave on a small one.

    Attributes:
        horizon: which forecast step to read (bars ahead), >= 1.
        enter: entry threshold on the forecast return (or in round trips, see ``enter_unit``).
        exit: leave a long when the forecast return drops below ``exit`` (a short when it
            rises above ``-exit``); ``exit <= enter``. 0 = leave when the sign turns.
        enter_unit: ``"return"`` (thresholds are returns, 0.002 = 0.2 %) or ``"cost"``
            (multiples of the symbol's round-trip cost, so 1.5 = 1.5 round trips).
        allow_short: short below ``-enter``.
        hold_bars: the fewest bars a position is held before it may be left or flipped:
            with ``h`` it is held exactly ``h`` bars (from the fill that opens it to the fill
            that leaves it) when the exit signal comes earlier; 0 and 1 both mean one bar.
        weight: the weight of a position, in (0, 1].
    """

    kind: Literal["forecast_threshold"] = "forecast_threshold"
    horizon: int = Field(default=1, ge=1)
    enter: float = Field(default=0.001, ge=0)
    exit: float = Field(default=0.0, ge=0)
    enter_unit: Literal["return", "cost"] = "return"
    allow_short: bool = False
    hold_bars: int = Field(default=0, ge=0)
    weight: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _exit_below_enter(self) -> ForecastThreshold:
        if self.exit > self.enter:
            raise ValueError(f"expected exit <= enter, was exit={self.exit} > enter={self.enter}")
        return self


class ForecastInterval(_Params):
    """Size by the forecast's probability of an up move and by its interval width.

    Attributes:
        horizon: which forecast step to read, >= 1.
        min_prob: trade only when P(up) >= min_prob (long) or <= 1 - min_prob (short).
        sizing: ``"probability"``: weight = max_weight * (2 P(up) - 1);
            ``"volatility"``: weight = sign * min(max_weight, target_vol / sigma);
            ``"both"``: the product (2 P(up) - 1) * target_vol / sigma, capped at max_weight.
            ``sigma`` is the relative standard deviation over ``horizon`` read from the
            80 % band: (hi_80 - lo_80) / (2 * 1.2816 * close).
        target_vol: the target standard deviation of the position's return over
            ``horizon`` bars (0.01 = 1 %).
        max_weight: the largest absolute weight, in (0, 1].
        allow_short: take short positions.
    """

    kind: Literal["forecast_interval"] = "forecast_interval"
    horizon: int = Field(default=1, ge=1)
    min_prob: float = Field(default=0.55, ge=0.5, lt=1)
    sizing: Literal["probability", "volatility", "both"] = "both"
    target_vol: float = Field(default=0.01, gt=0)
    max_weight: float = Field(default=1.0, gt=0, le=1)
    allow_short: bool = False


class BuyAndHold(_Params):
    """Hold ``weight`` of every symbol from its first bar."""

    kind: Literal["buy_and_hold"] = "buy_and_hold"
    weight: float = Field(default=1.0, gt=0, le=1)


class SmaCross(_Params):
    """Long while the ``fast`` simple moving average of closes is above the ``slow`` one."""

    kind: Literal["sma_cross"] = "sma_cross"
    fast: int = Field(default=10, ge=1)
    slow: int = Field(default=30, ge=2)
    allow_short: bool = False
    weight: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCross:
        if self.fast >= self.slow:
            raise ValueError(f"expected fast < slow, was fast={self.fast}, slow={self.slow}")
        return self


class NaiveDirection(_Params):
    """Follow the last bar's direction (the naive forecast's signal)."""

    kind: Literal["naive_direction"] = "naive_direction"
    allow_short: bool = False
    weight: float = Field(default=1.0, gt=0, le=1)


StrategyParams = ForecastThreshold | ForecastInterval | BuyAndHold | SmaCross | NaiveDirection

STRATEGY_KINDS: dict[str, type[_Params]] = {
    "forecast_threshold": ForecastThreshold,
    "forecast_interval": ForecastInterval,
    "buy_and_hold": BuyAndHold,
    "sma_cross": SmaCross,
    "naive_direction": NaiveDirection,
}


def parse_strategy(kind: str, params: dict[str, Any] | None = None) -> StrategyParams:
    """Validate ``params`` for strategy ``kind``.

    Raises:
        InvalidInputError: an unknown kind (the message lists the known ones), an unknown
            parameter (named in the message) or a value out of range.
    """
    model = STRATEGY_KINDS.get(kind)
    if model is None:
        raise InvalidInputError(
            f"unknown strategy kind {kind!r}; expected one of {', '.join(sorted(STRATEGY_KINDS))}"
        )
    values = dict(params or {})
    values.pop("kind", None)
    try:
        return model.model_validate(values)  # type: ignore[return-value]
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid {kind} parameters: "
            f"{describe_validation_errors(exc.errors(), show_input=True)}"
        ) from exc


def target_weights(
    params: StrategyParams,
    bars: dict[str, pd.DataFrame],
    forecasts: pd.DataFrame | None = None,
    *,
    costs: Costs | None = None,
) -> pd.DataFrame:
    """The target weights of ``params`` by decision bar (union of the symbols' ts).

    Args:
        params: a validated strategy (``parse_strategy``).
        bars: symbol -> OHLCV frame indexed by UTC ts.
        forecasts: point-in-time forecasts (long frame, see the module docstring); needed by
            the ``forecast_*`` kinds.
        costs: the trading costs; needed when ``enter_unit="cost"``.

    Raises:
        InvalidInputError: forecasts missing or malformed, or trained on data after the bar
            they were issued at; costs missing where the thresholds are in cost units.
    """
    if isinstance(params, ForecastThreshold):
        frame = forecast_threshold_batch([params], bars, forecasts, costs=costs)
        return frame[0]
    if isinstance(params, ForecastInterval):
        per_symbol = _interval_weights(params, bars, _checked_forecasts(forecasts))
    elif isinstance(params, BuyAndHold):
        per_symbol = {s: pd.Series(params.weight, index=f.index) for s, f in bars.items()}
    elif isinstance(params, SmaCross):
        per_symbol = {s: _sma_cross(params, f["close"]) for s, f in bars.items()}
    else:
        return naive_signal(bars, allow_short=params.allow_short, weight=params.weight)
    return _on_union(per_symbol, bars)


def _on_union(per_symbol: dict[str, pd.Series], bars: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-symbol decisions (on each symbol's own bars) on the union grid, held over gaps."""
    index = _union_index(bars)
    frame = pd.DataFrame({s: w.reindex(index) for s, w in per_symbol.items()}, index=index)
    return frame.ffill().fillna(0.0)


def _union_index(bars: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    frames = list(bars.values())
    index = frames[0].index
    for f in frames[1:]:
        index = index.union(f.index)
    return pd.DatetimeIndex(index)


def naive_signal(
    bars: dict[str, pd.DataFrame], *, allow_short: bool = False, weight: float = 1.0
) -> pd.DataFrame:
    """The naive baseline: long after an up bar, short (or flat) after a down bar."""
    per_symbol = {}
    for symbol, frame in bars.items():
        direction = np.sign(frame["close"].diff()).fillna(0.0)
        if not allow_short:
            direction = direction.clip(lower=0.0)
        per_symbol[symbol] = direction * weight
    return _on_union(per_symbol, bars)


def _sma_cross(params: SmaCross, close: pd.Series) -> pd.Series:
    fast = close.rolling(params.fast).mean()
    slow = close.rolling(params.slow).mean()
    low = -params.weight if params.allow_short else 0.0
    out = pd.Series(np.where(fast > slow, params.weight, low), index=close.index)
    return out.where(slow.notna(), 0.0)


def _checked_forecasts(forecasts: pd.DataFrame | None) -> pd.DataFrame:
    """The forecasts, refused when malformed or when they saw data after their decision bar."""
    if forecasts is None:
        raise InvalidInputError("this strategy kind needs point-in-time forecasts, got none")
    missing = set(FORECAST_COLUMNS) - set(forecasts.columns)
    if missing:
        raise InvalidInputError(f"forecasts: missing columns {sorted(missing)}")
    if "trained_through" in forecasts.columns:
        late = pd.to_datetime(forecasts["trained_through"], utc=True) > pd.to_datetime(
            forecasts["issued_at"], utc=True
        )
        if late.any():
            raise InvalidInputError(
                f"forecasts: {int(late.sum())} rows were trained on data after their "
                "issued_at bar (lookahead)"
            )
    return forecasts


def issued_index(issued_at: pd.Series, like: pd.Index) -> pd.DatetimeIndex:
    """``issued_at`` as a DatetimeIndex in the time zone of the bars' index ``like``.

    Both are UTC by contract; this keeps a tz-naive side (read from a file, say) from
    silently matching nothing.
    """
    stamps = pd.DatetimeIndex(pd.to_datetime(issued_at, utc=True))
    tz = getattr(like, "tz", None)
    return stamps.tz_convert(tz) if tz is not None else stamps.tz_localize(None)


def expected_returns(
    forecasts: pd.DataFrame, bars: dict[str, pd.DataFrame], horizon: int
) -> dict[str, pd.Series]:
    """Per symbol: the median forecast's return, ``median(step=horizon) / close(issued_at) - 1``
    (the median is the forecasts' ``mean`` column), on the symbol's own bars.

    A bar without a forecast issued at it gets NaN (no new decision there).
    """
    step = _checked_forecasts(forecasts)
    step = step[step["step"] == horizon]
    out = {}
    for symbol, frame in bars.items():
        rows = step[step["symbol"] == symbol].drop_duplicates("issued_at", keep="last")
        mean = pd.Series(
            rows["mean"].to_numpy(float), index=issued_index(rows["issued_at"], frame.index)
        )
        out[symbol] = mean.reindex(frame.index) / frame["close"] - 1.0
    return out


def threshold_positions(
    expected: np.ndarray,
    enter: np.ndarray,
    exit_: np.ndarray,
    hold_bars: np.ndarray,
    allow_short: np.ndarray,
) -> np.ndarray:
    """The ``forecast_threshold`` state machine for P parameter sets at once.

    Args:
        expected: (T,) forecast (median) returns at each decision bar (NaN = no forecast:
            keep).
        enter, exit_, hold_bars, allow_short: (P,) parameters (thresholds as returns).

    Returns:
        (T, P) positions in {-1, 0, 1}; row ``t`` uses ``expected[: t + 1]`` only.
    """
    n_p = enter.shape[0]
    r = expected[:, None]
    with np.errstate(invalid="ignore"):  # NaN compares False: no forecast, no signal
        # Per bar the target an entry rule asks for (1, -1, or NaN for none) and whether the
        # exit rule fires for a long / a short; computed for all bars at once.
        entry = np.where(r > enter, 1.0, np.where((r < -enter) & allow_short, -1.0, np.nan))
        leave_long = r < exit_
        leave_short = r > -exit_
    known = ~np.isnan(expected)
    pos = np.zeros(n_p)
    held = np.zeros(n_p)
    out = np.empty((expected.shape[0], n_p))
    for t in range(expected.shape[0]):
        if known[t]:
            leave = np.where(pos > 0, leave_long[t], leave_short[t] & (pos < 0))
            want = np.where(np.isnan(entry[t]), np.where(leave, 0.0, pos), entry[t])
            # ``held`` bars have passed since the entry decision; leaving now fills at the
            # next open, after ``held + 1`` bars in the position.
            new = np.where((pos == 0) | (held + 1 >= hold_bars), want, pos)
            held = np.where(new != pos, 0.0, held + 1)
            pos = new
        else:
            held += 1
        out[t] = pos
    return out


def forecast_threshold_batch(
    params: list[ForecastThreshold],
    bars: dict[str, pd.DataFrame],
    forecasts: pd.DataFrame | None,
    *,
    costs: Costs | None = None,
) -> list[pd.DataFrame]:
    """Target weights of many ``forecast_threshold`` parameter sets, one frame each."""
    array = forecast_threshold_array(params, bars, forecasts, costs=costs)
    index, symbols = _union_index(bars), list(bars)
    return [pd.DataFrame(array[:, k, :], index=index, columns=symbols) for k in range(len(params))]


def forecast_threshold_array(
    params: list[ForecastThreshold],
    bars: dict[str, pd.DataFrame],
    forecasts: pd.DataFrame | None,
    *,
    costs: Costs | None = None,
) -> np.ndarray:
    """(T, P, S) target weights of P ``forecast_threshold`` sets on the union grid.

    The state machine runs once per symbol and horizon with the parameter sets as a numpy
    axis, which is what makes a 1,000-set sweep cheap.
    """
    if any(p.enter_unit == "cost" for p in params) and costs is None:
        raise InvalidInputError("enter_unit='cost' needs the trading costs, got none")
    index = _union_index(bars)
    out = np.zeros((len(index), len(params), len(bars)))
    for horizon in sorted({p.horizon for p in params}):
        picked = [k for k, p in enumerate(params) if p.horizon == horizon]
        group = [params[k] for k in picked]
        # A contiguous block (the usual sweep layout) is written as a view, much faster.
        contiguous = picked == list(range(picked[0], picked[-1] + 1))
        chosen: slice | list[int] = slice(picked[0], picked[-1] + 1) if contiguous else picked
        expected = expected_returns(forecasts, bars, horizon)
        for s, symbol in enumerate(bars):
            unit = np.array(
                [
                    costs.round_trip(symbol) if p.enter_unit == "cost" and costs else 1.0
                    for p in group
                ]
            )
            pos = threshold_positions(
                expected[symbol].to_numpy(float),
                np.array([p.enter for p in group]) * unit,
                np.array([p.exit for p in group]) * unit,
                np.array([p.hold_bars for p in group], dtype=float),
                np.array([p.allow_short for p in group]),
            ) * np.array([p.weight for p in group])
            # Each union bar takes the symbol's last decision at or before it (0 before any).
            last = np.searchsorted(bars[symbol].index, index, side="right")
            out[:, chosen, s] = np.vstack([np.zeros((1, len(group))), pos])[last]
    return out


def prob_up(close: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """P(price > close) read from the 2.5/10/50/90/97.5 % levels.

    The levels are mapped to their standard-normal scores (-1.96, -1.28, 0, 1.28, 1.96); the
    score of ``close`` is interpolated linearly between them (and extrapolated past the 95 %
    band with that band's sigma), then turned into a probability with the normal CDF. For a
    normal forecast this is exact; skewed bands give a piecewise-normal CDF.

    Args:
        close: (N,) current prices.
        quantiles: (N, 5) levels ``lo_95, lo_80, mean, hi_80, hi_95`` (sorted per row here,
            so crossed bands do not break the interpolation).
    """
    q = np.sort(quantiles, axis=1)
    scores = np.array([-_Z95, -_Z80, 0.0, _Z80, _Z95])
    z = np.full(close.shape, np.nan)
    for k in range(4):
        lo, hi = q[:, k], q[:, k + 1]
        inside = (close >= lo) & (close <= hi)
        width = np.where(hi > lo, hi - lo, 1.0)
        z = np.where(inside, scores[k] + (scores[k + 1] - scores[k]) * (close - lo) / width, z)
    sigma = np.maximum((q[:, 4] - q[:, 0]) / (2 * _Z95), 1e-12)
    z = np.where(close < q[:, 0], -_Z95 + (close - q[:, 0]) / sigma, z)
    z = np.where(close > q[:, 4], _Z95 + (close - q[:, 4]) / sigma, z)
    return np.where(np.isnan(z), np.nan, norm.sf(z))


def _interval_weights(
    params: ForecastInterval, bars: dict[str, pd.DataFrame], forecasts: pd.DataFrame
) -> dict[str, pd.Series]:
    rows_h = forecasts[forecasts["step"] == params.horizon]
    out = {}
    for symbol, frame in bars.items():
        rows = rows_h[rows_h["symbol"] == symbol].drop_duplicates("issued_at", keep="last")
        levels = rows.set_index(issued_index(rows["issued_at"], frame.index))[
            ["lo_95", "lo_80", "mean", "hi_80", "hi_95"]
        ].reindex(frame.index)
        close = frame["close"].to_numpy(float)
        p = prob_up(close, levels.to_numpy(float))
        sigma = (levels["hi_80"] - levels["lo_80"]).to_numpy(float) / (2 * _Z80 * close)
        out[symbol] = pd.Series(_interval_size(params, p, sigma), index=frame.index)
    return out


def _interval_size(params: ForecastInterval, p: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Weights from P(up) and the relative sigma; NaN (no forecast) keeps the last decision."""
    with np.errstate(divide="ignore", invalid="ignore"):
        vol_scale = np.where(sigma > 0, params.target_vol / sigma, params.max_weight)
    edge = 2 * p - 1
    if params.sizing == "probability":
        w = params.max_weight * edge
    elif params.sizing == "volatility":
        w = np.sign(edge) * vol_scale
    else:
        w = edge * vol_scale
    w = np.clip(w, -params.max_weight, params.max_weight)
    trade = (p >= params.min_prob) | ((p <= 1 - params.min_prob) & params.allow_short)
    w = np.where(trade, w, 0.0)
    if not params.allow_short:
        w = np.maximum(w, 0.0)
    return np.where(np.isnan(p), np.nan, w)


def drift_forecasts(
    bars: dict[str, pd.DataFrame], *, horizon: int = 5, window: int = 20
) -> pd.DataFrame:
    """Point-in-time baseline forecasts from the bars alone (no model): a random walk with
    drift whose drift and volatility are the mean and standard deviation of the last
    ``window`` log returns up to the issuing bar. Useful as synthetic forecasts in tests and
    benchmarks, and as a statistical baseline.

    Returns:
        The long forecasts frame of the contract (``mean`` = the log-normal median
        ``exp(log close + drift * step)``, ``model_version="drift-baseline"``,
        ``trained_through = issued_at``).
    """
    frames = []
    z80, z95 = _Z80, _Z95
    for symbol, frame in bars.items():
        close = frame["close"].astype(float)
        logret = np.log(close).diff()
        mu = logret.rolling(window).mean()
        sd = logret.rolling(window).std()
        ok = mu.notna() & sd.notna()
        for step in range(1, horizon + 1):
            centre = np.log(close[ok]) + mu[ok] * step
            spread = sd[ok] * np.sqrt(step)
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "issued_at": close.index[ok],
                        "step": step,
                        "mean": np.exp(centre).to_numpy(),
                        "lo_80": np.exp(centre - z80 * spread).to_numpy(),
                        "hi_80": np.exp(centre + z80 * spread).to_numpy(),
                        "lo_95": np.exp(centre - z95 * spread).to_numpy(),
                        "hi_95": np.exp(centre + z95 * spread).to_numpy(),
                        "model_version": "drift-baseline",
                        "trained_through": close.index[ok],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)
