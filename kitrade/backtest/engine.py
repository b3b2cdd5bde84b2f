"""Execution and costs: target weights in, fills, cash, positions and equity out.

The engine is pure numpy. A decision made at bar ``t`` (a row of target weights) is filled at
the open of the symbol's next bar. Orders are only sent when a symbol's target changes, so a
held position drifts with its price instead of being topped up every bar.

Order semantics (they match vectorbt's ``Portfolio.from_orders`` with ``size_type=
"targetpercent"``, ``cash_sharing=True``, ``call_seq="auto"`` and ``price=open``, which the
tests and ``scripts/bench_backtest.py`` check):

* the portfolio value of a fill bar is ``cash + sum(units * valuation price)``, where the
  valuation price is the bar's open for a symbol with a bar and the last close otherwise;
* the target units are ``weight * value / open``; the order is the difference from the units
  held; sells execute first, then buys in ascending order of value;
* a buy costs ``qty * open * (1 + slip) * (1 + commission) + fixed`` and is cut down to the
  cash left when that is not enough (a partial fill); a sell receives
  ``qty * open * (1 - slip) * (1 - commission) - fixed``; shorts are allowed (their proceeds
  go to cash);
* ``slip`` is half the symbol's spread plus its slippage;
* there is no margin call: a short can lose more than the account, and once the portfolio
  value is zero or below no order fills any more (as in vectorbt).

``max_gross`` bounds each decision row (``sum(|w|)``, scaled down when above). The symbols
that trade at a fill reach their share of the value at that fill; a holding that is not
re-ordered drifts with its price until its next order.

Every bar's result depends only on bars up to it, so a backtest cut at bar ``t`` gives the same
values up to ``t`` as the full one (the truncation property, tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kitrade.errors import InvalidInputError, describe_validation_errors

__all__ = [
    "BacktestResult",
    "Costs",
    "SimArrays",
    "align_bars",
    "make_costs",
    "orders_from_weights",
    "run_backtest",
    "run_batch",
    "scale_gross",
    "simulate",
]

_REL_TOL = 1e-9  # vectorbt's tolerance for "the cash is (almost) enough"
_ABS_TOL = 1e-12


class Costs(BaseModel):
    """Trading costs, each a non-negative number.

    Attributes:
        commission: relative commission per fill, a fraction of the traded notional
            (default 0.0005 = 5 bp).
        fixed: fixed fee per fill, in account currency (default 0).
        spread: full bid-ask spread as a fraction of the price, by symbol or ``"*"`` for all
            (default 0.0002 = 2 bp); each fill pays half of it. A bare number = ``{"*": x}``.
        slippage: adverse price move per fill as a fraction of the price, by symbol or ``"*"``
            (default 0.0001 = 1 bp). A bare number = ``{"*": x}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission: float = Field(default=0.0005, ge=0)
    fixed: float = Field(default=0.0, ge=0)
    spread: dict[str, float] = Field(default_factory=lambda: {"*": 0.0002})
    slippage: dict[str, float] = Field(default_factory=lambda: {"*": 0.0001})

    @field_validator("spread", "slippage", mode="before")
    @classmethod
    def _scalar_for_all(cls, value: object) -> object:
        """A bare number means the same value for every symbol."""
        return {"*": value} if isinstance(value, int | float) else value

    @field_validator("spread", "slippage")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v >= 0}
        if bad:
            raise ValueError(f"expected values >= 0, was {bad}")
        return value

    def slip(self, symbol: str) -> float:
        """The adverse price fraction one fill of ``symbol`` pays (half spread + slippage)."""
        spread = self.spread.get(symbol, self.spread.get("*", 0.0))
        return spread / 2 + self.slippage.get(symbol, self.slippage.get("*", 0.0))

    def round_trip(self, symbol: str) -> float:
        """The relative cost of entering and leaving a position in ``symbol`` (no fixed fee)."""
        return 2 * (self.commission + self.slip(symbol))


def make_costs(**values: object) -> Costs:
    """Build ``Costs`` from loose values, raising ``InvalidInputError`` on a bad one."""
    try:
        return Costs.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid costs: {describe_validation_errors(exc.errors(), show_input=True)}"
        ) from exc


@dataclass(frozen=True)
class SimArrays:
    """Bars on one time grid: ``open``/``close`` are (T, S) with NaN where a symbol has no bar."""

    index: pd.DatetimeIndex
    symbols: list[str]
    open: np.ndarray
    close: np.ndarray

    @property
    def has_bar(self) -> np.ndarray:
        """(T, S) mask of the bars that exist."""
        return ~np.isnan(self.open)

    @property
    def val_price(self) -> np.ndarray:
        """(T, S) valuation price at the open: the open, or the last close where no bar."""
        return np.where(self.has_bar, self.open, _ffill(self.close))

    @property
    def close_ffill(self) -> np.ndarray:
        """(T, S) last known close (NaN before a symbol's first bar)."""
        return _ffill(self.close)


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along axis 0 of a 2-D array."""
    idx = np.where(~np.isnan(a), np.arange(a.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = a[idx, np.arange(a.shape[1])[None, :]]
    return out


def align_bars(bars: dict[str, pd.DataFrame]) -> SimArrays:
    """Put each symbol's bars on the union of their timestamps.

    Raises:
        InvalidInputError: no symbols, a frame without ``open``/``close``, an index that is
            not a sorted, unique DatetimeIndex, or a non-positive price.
    """
    if not bars:
        raise InvalidInputError("expected at least one symbol's bars, was none")
    for symbol, frame in bars.items():
        missing = {"open", "close"} - set(frame.columns)
        if missing:
            raise InvalidInputError(
                f"bars of {symbol}: expected columns open, close; missing {sorted(missing)}"
            )
        idx = frame.index
        if (
            not isinstance(idx, pd.DatetimeIndex)
            or not idx.is_monotonic_increasing
            or not idx.is_unique
        ):
            raise InvalidInputError(f"bars of {symbol}: expected a sorted, unique DatetimeIndex")
        if (frame[["open", "close"]] <= 0).any().any():
            raise InvalidInputError(f"bars of {symbol}: expected positive open and close prices")
    symbols = list(bars)
    index = bars[symbols[0]].index
    for symbol in symbols[1:]:
        index = index.union(bars[symbol].index)
    opens = np.column_stack([bars[s]["open"].reindex(index).to_numpy(float) for s in symbols])
    closes = np.column_stack([bars[s]["close"].reindex(index).to_numpy(float) for s in symbols])
    return SimArrays(index=pd.DatetimeIndex(index), symbols=symbols, open=opens, close=closes)


def scale_gross(weights: np.ndarray, max_gross: float) -> np.ndarray:
    """Scale each row (last axis = symbols) down so that ``sum(|w|) <= max_gross``.

    NaN counts as 0. Summed symbol by symbol: with few symbols that is much faster than a
    reduction over the short last axis of a large array.
    """
    w = np.asarray(weights, float)
    if np.isnan(w).any():
        w = np.nan_to_num(w)
    gross = np.zeros(w.shape[:-1])
    for s in range(w.shape[-1]):
        gross += np.abs(w[..., s])
    over = gross > max_gross
    if not over.any():
        return w
    factor = np.where(over, max_gross / np.where(over, gross, 1.0), 1.0)
    return w * factor[..., None]


def orders_from_weights(weights: np.ndarray, has_bar: np.ndarray) -> np.ndarray:
    """Target weights per fill bar: NaN where no order is sent.

    Args:
        weights: (T, S) or (T, P, S) decisions at each bar's close (NaN = no decision yet = 0),
            already forward-filled over bars a symbol lacks.
        has_bar: (T, S) mask of existing bars.

    Returns:
        Same shape: at bar ``i`` the decision of bar ``i - 1`` where the symbol has a bar and
        that decision differs from the one last sent for it; NaN elsewhere.
    """
    w = np.asarray(weights, float)
    batched = w.ndim == 3
    if not batched:
        w = w[:, None, :]
    out = np.full(w.shape, np.nan)
    for s in range(w.shape[2]):
        rows = np.flatnonzero(has_bar[:, s])
        if rows.size == 0:
            continue
        # The target at a fill bar is the decision of the bar before it (0 before any).
        ws = np.nan_to_num(w[:, :, s])
        own = np.zeros((rows.size, w.shape[1]))
        later = rows > 0
        own[later] = ws[rows[later] - 1]
        prev = np.zeros_like(own)
        prev[1:] = own[:-1]
        out[rows, :, s] = np.where(own != prev, own, np.nan)
    return out if batched else out[:, 0, :]


@dataclass
class _State:
    cash: np.ndarray  # (P,)
    pos: np.ndarray  # (P, S)
    fills: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )


def simulate(
    sim: SimArrays,
    orders: np.ndarray,
    *,
    commission: float,
    fixed: float,
    slip: np.ndarray,
    init_cash: float,
    record_fills: bool = True,
) -> tuple[
    np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
]:
    """Run target-weight orders for P parameter sets at once.

    Args:
        sim: the aligned bars.
        orders: (T, P, S) target weights to fill at bar ``i``'s open, NaN = no order
            (see ``orders_from_weights``).
        commission: relative commission.
        fixed: fixed fee per fill.
        slip: (S,) adverse price fraction per fill.
        init_cash: starting cash of each parameter set.
        record_fills: keep the fills (``(bar, qty, price, fee)`` arrays per fill bar).

    Returns:
        ``equity`` (T, P) at each close, ``cash`` (T, P) and the fill records.
    """
    n_t, n_p, n_s = orders.shape
    vp, close_ff = sim.val_price, np.nan_to_num(sim.close_ffill)
    state = _State(cash=np.full(n_p, float(init_cash)), pos=np.zeros((n_p, n_s)))
    equity = np.empty((n_t, n_p))
    cash = np.empty((n_t, n_p))
    fill_bars = np.flatnonzero(~np.isnan(orders).all(axis=(1, 2)))
    bounds = [*fill_bars.tolist(), n_t]
    if bounds[0] > 0:
        bounds.insert(0, 0)
    for k in range(len(bounds) - 1):
        i, j = bounds[k], bounds[k + 1]
        if not np.isnan(orders[i]).all():
            _fill_bar(
                state, i, orders[i], sim.open[i], vp[i], commission, fixed, slip, record_fills
            )
        equity[i:j] = state.cash + close_ff[i:j] @ state.pos.T
        cash[i:j] = state.cash
    return equity, cash, state.fills


def _fill_bar(
    st: _State,
    i: int,
    target: np.ndarray,
    price: np.ndarray,
    val_price: np.ndarray,
    commission: float,
    fixed: float,
    slip: np.ndarray,
    record: bool,
) -> None:
    """Fill one bar's orders (P, S) in place: sells first, then buys by ascending value."""
    vp = np.nan_to_num(val_price)
    value = st.cash + st.pos @ vp
    has = ~np.isnan(target) & (value[:, None] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(has, np.nan_to_num(target) * value[:, None] / vp - st.pos, 0.0)
    delta[np.isclose(delta, 0.0, rtol=0, atol=_ABS_TOL)] = 0.0
    qty = np.zeros_like(delta)
    fee = np.zeros_like(delta)
    # Sells: proceeds never limited (shorting is allowed), rejected only if fees exceed them.
    sell_px = price * (1 - slip)
    proceeds = -np.minimum(delta, 0.0) * sell_px
    sell_fee = np.where(delta < 0, proceeds * commission + fixed, 0.0)
    ok = (delta < 0) & (proceeds - sell_fee >= 0)
    qty[ok], fee[ok] = delta[ok], sell_fee[ok]
    st.cash += np.where(ok, proceeds - sell_fee, 0.0).sum(axis=1)
    # Buys, each limited by the cash left; the cheapest order goes first (vectorbt's auto order).
    buy_px = price * (1 + slip)
    approx = np.where(delta > 0, delta * vp, np.inf)
    order = np.argsort(approx, axis=1, kind="stable")
    rows = np.arange(delta.shape[0])
    for k in range(delta.shape[1]):
        col = order[:, k]
        size = delta[rows, col]
        buys = size > 0
        if not buys.any():
            break
        _buy(st, rows[buys], col[buys], size[buys], buy_px[col[buys]], commission, fixed, qty, fee)
    st.pos += qty
    if record:
        st.fills.append((i, qty, np.where(qty > 0, buy_px, sell_px) * (qty != 0), fee, value))


def _buy(
    st: _State,
    rows: np.ndarray,
    cols: np.ndarray,
    size: np.ndarray,
    px: np.ndarray,
    commission: float,
    fixed: float,
    qty: np.ndarray,
    fee: np.ndarray,
) -> None:
    """Buy ``size`` at ``px`` for the given (row, col) pairs, cut to the cash each row has."""
    cash = np.where(np.isclose(st.cash[rows], 0.0, rtol=0, atol=_ABS_TOL), 0.0, st.cash[rows])
    need = size * px * (1 + commission) + fixed
    enough = (need <= cash) | (
        np.abs(need - cash)
        <= np.maximum(_REL_TOL * np.maximum(np.abs(need), np.abs(cash)), _ABS_TOL)
    )
    max_notional = (cash - fixed) / (1 + commission)
    fill = np.where(enough, size, np.maximum(max_notional, 0.0) / px)
    paid = np.where(enough, size * px * commission + fixed, cash - max_notional)
    spent = np.where(enough, need, cash)
    done = (cash > 0) & (fill > 0) & (enough | (max_notional > 0))
    qty[rows[done], cols[done]] = fill[done]
    fee[rows[done], cols[done]] = paid[done]
    st.cash[rows[done]] -= spent[done]


@dataclass(frozen=True)
class BacktestResult:
    """One backtest's outcome.

    Attributes:
        equity: portfolio value at each bar's close (last close for symbols without a bar).
        cash: cash after each bar's fills.
        positions: units held per symbol after each bar's fills.
        weights: the target weights as decided at each bar (after the ``max_gross`` scaling).
        fills: one row per fill: ``ts, symbol, side, qty, price, fee, value`` (qty > 0, side
            ``buy``/``sell``, price after spread and slippage, portfolio value at the fill).
        close: the last known close per symbol at each bar (for marking to market).
        init_cash: starting cash.
    """

    equity: pd.Series
    cash: pd.Series
    positions: pd.DataFrame
    weights: pd.DataFrame
    fills: pd.DataFrame
    close: pd.DataFrame
    init_cash: float

    @property
    def fees_paid(self) -> float:
        """Total fees, spread and slippage excluded (they are in the fill prices)."""
        return float(self.fills["fee"].sum())

    @property
    def traded_notional(self) -> float:
        """Sum of ``qty * price`` over all fills."""
        return float((self.fills["qty"] * self.fills["price"]).sum())

    @property
    def turnover(self) -> float:
        """Traded notional over the average equity (1.0 = the book traded once)."""
        mean_equity = float(self.equity.mean())
        return self.traded_notional / mean_equity if mean_equity > 0 else float("nan")


def run_backtest(
    bars: dict[str, pd.DataFrame],
    weights: pd.DataFrame,
    *,
    costs: Costs | None = None,
    init_cash: float = 100_000.0,
    max_gross: float = 1.0,
) -> BacktestResult:
    """Fill a strategy's target weights against the bars.

    Args:
        bars: symbol -> OHLCV frame indexed by UTC ts.
        weights: target weights by decision bar (index within the union of the bars' ts),
            columns = symbols, values in [-1, 1]; a decision at bar t fills at the next bar's
            open of each symbol.
        costs: trading costs (defaults of ``Costs()`` when omitted).
        init_cash: starting cash, > 0.
        max_gross: the most ``sum(|weight|)`` a decision may hold; rows above it are scaled
            down (default 1.0: no leverage).

    Raises:
        InvalidInputError: bad bars, weights outside [-1, 1] or naming unknown symbols,
            a non-positive ``init_cash`` or ``max_gross``.
    """
    costs = costs or Costs()
    if not init_cash > 0 or not max_gross > 0:
        raise InvalidInputError(
            f"expected init_cash > 0 and max_gross > 0, was {init_cash}, {max_gross}"
        )
    sim = align_bars(bars)
    w = _weights_matrix(weights, sim)
    w = scale_gross(w, max_gross)
    orders = orders_from_weights(w, sim.has_bar)[:, None, :]
    slip = np.array([costs.slip(s) for s in sim.symbols])
    equity, cash, fills = simulate(
        sim, orders, commission=costs.commission, fixed=costs.fixed, slip=slip, init_cash=init_cash
    )
    return BacktestResult(
        equity=pd.Series(equity[:, 0], index=sim.index, name="equity"),
        cash=pd.Series(cash[:, 0], index=sim.index, name="cash"),
        positions=_positions_frame(fills, sim),
        weights=pd.DataFrame(w, index=sim.index, columns=sim.symbols),
        fills=_fills_frame(fills, sim),
        close=pd.DataFrame(sim.close_ffill, index=sim.index, columns=sim.symbols),
        init_cash=float(init_cash),
    )


def _weights_matrix(weights: pd.DataFrame, sim: SimArrays) -> np.ndarray:
    """(T, S) decisions on the union grid, forward-filled, 0 before the first decision."""
    unknown = set(weights.columns) - set(sim.symbols)
    if unknown:
        raise InvalidInputError(f"weights name symbols without bars: {sorted(unknown)}")
    stray = pd.DatetimeIndex(weights.index).difference(sim.index)
    if len(stray):
        raise InvalidInputError(
            f"weights are indexed by decision bars; {len(stray)} timestamps are no bar's "
            f"(first {stray[0]})"
        )
    values = weights.to_numpy(float)
    if np.nanmax(np.abs(values), initial=0.0) > 1.0 + 1e-12:
        raise InvalidInputError("expected target weights in [-1, 1], was a value outside")
    frame = weights.reindex(columns=sim.symbols).reindex(sim.index).ffill().fillna(0.0)
    return frame.to_numpy(float)


def _fills_frame(fills: list, sim: SimArrays) -> pd.DataFrame:
    rows = []
    for i, qty, price, fee, value in fills:
        for s in np.flatnonzero(qty[0]):
            q = float(qty[0, s])
            rows.append(
                (
                    sim.index[i],
                    sim.symbols[s],
                    "buy" if q > 0 else "sell",
                    abs(q),
                    float(price[0, s]),
                    float(fee[0, s]),
                    float(value[0]),
                )
            )
    columns = ["ts", "symbol", "side", "qty", "price", "fee", "value"]
    return pd.DataFrame(rows, columns=columns)


def _positions_frame(fills: list, sim: SimArrays) -> pd.DataFrame:
    delta = np.zeros((len(sim.index), len(sim.symbols)))
    for i, qty, *_ in fills:
        delta[i] = qty[0]
    return pd.DataFrame(np.cumsum(delta, axis=0), index=sim.index, columns=sim.symbols)


def run_batch(
    bars: dict[str, pd.DataFrame],
    weights: np.ndarray,
    *,
    costs: Costs | None = None,
    init_cash: float = 100_000.0,
    max_gross: float = 1.0,
) -> pd.DataFrame:
    """Equity curves of P weight sets at once (a parameter sweep), no fill records.

    Args:
        bars: symbol -> OHLCV frame.
        weights: (T, P, S) decisions on the union grid of the bars (``align_bars``), symbols in
            the order of ``bars``.
        costs, init_cash, max_gross: as in ``run_backtest``.

    Returns:
        Equity, one column per weight set, indexed by the union ts.
    """
    costs = costs or Costs()
    sim = align_bars(bars)
    if (
        weights.ndim != 3
        or weights.shape[0] != len(sim.index)
        or weights.shape[2] != len(sim.symbols)
    ):
        raise InvalidInputError(
            f"expected weights of shape (T={len(sim.index)}, P, S={len(sim.symbols)}), "
            f"was {weights.shape}"
        )
    if np.nanmax(np.abs(weights), initial=0.0) > 1.0 + 1e-12:
        raise InvalidInputError("expected target weights in [-1, 1], was a value outside")
    orders = orders_from_weights(scale_gross(weights, max_gross), sim.has_bar)
    slip = np.array([costs.slip(s) for s in sim.symbols])
    equity, _, _ = simulate(
        sim,
        orders,
        commission=costs.commission,
        fixed=costs.fixed,
        slip=slip,
        init_cash=init_cash,
        record_fills=False,
    )
    return pd.DataFrame(equity, index=sim.index)
