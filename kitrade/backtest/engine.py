"""Execution and costs: target weights in, fills, cash, positions and equity out.

The engine is pure numpy and models one margin account shared by all symbols. A decision made
at bar ``t`` (a row of target weights) is filled at the open of the symbol's next bar. An
order goes out when a symbol's target changes; a buy that buying power cut short stays open
and is sent again at the symbol's next bars until it is filled or the target changes, so a
held position otherwise drifts with its price instead of being topped up every bar.

Order semantics (with ``max_gross = 1`` and no financing or borrow costs they are vectorbt's
``Portfolio.from_orders`` with ``size_type="targetpercent"``, ``cash_sharing=True``,
``call_seq="auto"`` and ``price=open``, given the orders the engine sent, as long as at most
one buy per bar is cut; the tests and ``scripts/bench_backtest.py`` check it):

* the portfolio value (equity) of a fill bar is ``cash + sum(units * valuation price)``, where
  the valuation price is the bar's open for a symbol with a bar and the last close otherwise;
* the target units are ``weight * value / open``; the order is the difference from the units
  held; sells execute first, then buys;
* buying power is ``cash + max(max_gross - 1, 0) * value``: a buy may take cash down to
  ``-(max_gross - 1) * value`` (borrowed cash). With ``max_gross <= 1`` nothing is borrowed
  (the decisions' own scaling keeps the book at ``max_gross``).
  Short sales are allowed and their proceeds go to cash (as in vectorbt);
* a buy costs ``qty * open * (1 + slip) * (1 + commission) + fixed``. When the bar's buys
  need more than the buying power, every buy of the bar is cut by the same fraction (pro
  rata) so that together they spend it exactly. A buy left more than 1 % short of its target
  position (``_RETRY_TOL``) keeps its order open: it is sent again at the symbol's next bar
  where the account has buying power, until it reaches the target (within 1 %) or a new
  target replaces it; a retry never sells (a target reached by drift counts as filled);
* a sell receives ``qty * open * (1 - slip) * (1 - commission) - fixed``;
* ``slip`` is half the symbol's spread plus its slippage;
* carry costs, charged at each bar for the time since the previous bar (years of 365.25
  days): ``financing`` (annual rate) on borrowed cash (negative cash) and ``borrow`` (annual
  rate) on the short notional at the previous bar's close. Positive cash earns nothing;
* there is no margin call: a short or a levered book can lose more than the account, and once
  the portfolio value is zero or below no order fills any more (as in vectorbt).

``max_gross`` bounds each decision row (``sum(|w|)``, scaled down when above) and sets the
buying power. ``BacktestResult.weights`` are the weights held (units times close over
equity), ``targets`` the scaled decisions and ``orders`` the targets sent at each bar.

Every bar's result depends only on bars up to it, so a backtest cut at bar ``t`` gives the same
values up to ``t`` as the full one (the truncation property, tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kitrade.errors import InvalidInputError, describe_validation_errors

__all__ = [
    "DEFAULT_COMMISSION",
    "BacktestResult",
    "Costs",
    "SimArrays",
    "SimTrace",
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
#: a buy filled to within this fraction of its target position is complete (not retried)
_RETRY_TOL = 0.01
_YEAR_NS = 365.25 * 86_400 * 1e9
#: a chunk of bars scanned at once for the next bar where an open buy can fill
_SCAN = 256

#: Commission per fill by asset class (``kitrade.schemas.domain.AssetClass``), a fraction of
#: the traded notional, used for a symbol when the costs give no commission for it (nor ``*``):
#: FX 0.2 bp (an ECN's round-turn fee of about $4 per million), crypto 10 bp (a spot
#: exchange's taker fee), stocks and anything else 5 bp, index and commodity futures/CFDs 1 bp.
DEFAULT_COMMISSION: dict[str, float] = {
    "fx": 0.00002,
    "crypto": 0.001,
    "stock": 0.0005,
    "index": 0.0001,
    "commodity": 0.0001,
    "other": 0.0005,
}
_DEFAULTS = {"commission": 0.0005, "spread": 0.0002, "slippage": 0.0001}


class Costs(BaseModel):
    """Trading and carry costs, each a non-negative number.

    A per-symbol cost is a mapping from symbol to value; ``"*"`` is every other symbol, and
    when it is left out it keeps its default (``{"GOOG": 0.001}`` sets GOOG and leaves the
    others at the default). A bare number means ``{"*": x}``.

    Attributes:
        commission: relative commission per fill, a fraction of the traded notional, a number
            or per symbol (default 0.0005 = 5 bp; ``make_costs`` with asset classes fills in
            ``DEFAULT_COMMISSION`` per symbol: FX 0.2 bp, crypto 10 bp, stocks 5 bp).
        fixed: fixed fee per fill, in account currency (default 0).
        spread: full bid-ask spread as a fraction of the price, per symbol (default 0.0002 =
            2 bp); each fill pays half of it.
        slippage: adverse price move per fill as a fraction of the price, per symbol (default
            0.0001 = 1 bp).
        financing: annual interest rate on borrowed cash (negative cash, which only a
            ``max_gross`` above 1 allows), charged per bar by the time elapsed (default 0.05 =
            5 %/yr, about a broker's benchmark rate plus spread).
        borrow: annual fee on the notional of short positions, charged per bar by the time
            elapsed (default 0.01 = 1 %/yr, general-collateral stock borrow; FX and crypto
            shorts pay it too, as a stand-in for swap/funding costs).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission: float | dict[str, float] = Field(default=_DEFAULTS["commission"])
    fixed: float = Field(default=0.0, ge=0)
    spread: dict[str, float] = Field(default_factory=lambda: {"*": _DEFAULTS["spread"]})
    slippage: dict[str, float] = Field(default_factory=lambda: {"*": _DEFAULTS["slippage"]})
    financing: float = Field(default=0.05, ge=0, le=1)
    borrow: float = Field(default=0.01, ge=0, le=1)

    @field_validator("spread", "slippage", mode="before")
    @classmethod
    def _scalar_for_all(cls, value: object, info: Any) -> object:
        """A bare number means every symbol; a mapping keeps the default for ``"*"``."""
        if isinstance(value, int | float):
            return {"*": value}
        if isinstance(value, Mapping) and "*" not in value:
            return {"*": _DEFAULTS[info.field_name], **value}
        return value

    @field_validator("commission", mode="before")
    @classmethod
    def _commission_default(cls, value: object) -> object:
        """A per-symbol commission keeps the default for ``"*"``."""
        if isinstance(value, Mapping) and "*" not in value:
            return {"*": _DEFAULTS["commission"], **value}
        return value

    @field_validator("commission", "spread", "slippage")
    @classmethod
    def _non_negative(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        values = value if isinstance(value, dict) else {"*": value}
        bad = {k: v for k, v in values.items() if not v >= 0}
        if bad:
            raise ValueError(f"expected values >= 0, was {bad}")
        return value

    def commission_for(self, symbol: str) -> float:
        """The relative commission of one fill of ``symbol``."""
        if isinstance(self.commission, dict):
            return self.commission.get(symbol, self.commission["*"])
        return self.commission

    def slip(self, symbol: str) -> float:
        """The adverse price fraction one fill of ``symbol`` pays (half spread + slippage)."""
        spread = self.spread.get(symbol, self.spread.get("*", 0.0))
        return spread / 2 + self.slippage.get(symbol, self.slippage.get("*", 0.0))

    def round_trip(self, symbol: str) -> float:
        """The relative cost of entering and leaving a position in ``symbol`` (no fixed fee)."""
        return 2 * (self.commission_for(symbol) + self.slip(symbol))

    def check_symbols(self, symbols: Sequence[str]) -> None:
        """Refuse per-symbol costs for symbols that are not ``symbols`` (``"*"`` aside).

        Raises:
            InvalidInputError: naming each such key and the cost it was given for.
        """
        known = {*symbols, "*"}
        stray = {
            name: sorted(set(values) - known)
            for name in ("commission", "spread", "slippage")
            if isinstance(values := getattr(self, name), dict) and set(values) - known
        }
        if stray:
            named = "; ".join(f"{name}: {', '.join(keys)}" for name, keys in stray.items())
            raise InvalidInputError(
                f"costs name symbols that are not in the backtest ({named}); expected "
                f"'*' or one of {', '.join(symbols)}"
            )


def make_costs(asset_classes: Mapping[str, str] | None = None, **values: object) -> Costs:
    """Build ``Costs`` from loose values, raising ``InvalidInputError`` on a bad one.

    Args:
        asset_classes: symbol -> asset class of the backtest's symbols. When given, per-symbol
            costs for other symbols are refused, and each symbol the commission does not name
            (when it sets no ``"*"`` either) gets its class's ``DEFAULT_COMMISSION``.
        **values: ``Costs`` fields.
    """
    if asset_classes is not None:
        given = values.get("commission")
        if given is None or (isinstance(given, Mapping) and "*" not in given):
            by_class = {
                s: DEFAULT_COMMISSION.get(c, DEFAULT_COMMISSION["other"])
                for s, c in asset_classes.items()
            }
            values["commission"] = by_class | dict(given or {})
    try:
        costs = Costs.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid costs: {describe_validation_errors(exc.errors(), show_input=True)}"
        ) from exc
    if asset_classes is not None:
        costs.check_symbols(list(asset_classes))
    return costs


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
    """Target weights per fill bar where the target changes: NaN elsewhere.

    These are the new orders; the engine re-sends open buys itself (``simulate``).

    Args:
        weights: (T, S) or (T, P, S) decisions at each bar's close (NaN = no decision yet = 0),
            already forward-filled over bars a symbol lacks.
        has_bar: (T, S) mask of existing bars.

    Returns:
        Same shape: at bar ``i`` the decision of bar ``i - 1`` where the symbol has a bar and
        that decision differs from the one before it; NaN elsewhere.
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
class SimTrace:
    """What ``simulate`` did beyond the equity, filled in when passed to it.

    Attributes:
        sent: (T, P, S) the target weight of each order sent at each bar, retries of open
            buys included (NaN = none); what vectorbt needs to replay the same orders. In a
            batch a row's open buy may be re-sent at a bar another row needed, without
            buying power, so without a fill.
        carry: (T, P) financing and borrow costs charged at each bar.
    """

    sent: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    carry: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))


@dataclass
class _State:
    cash: np.ndarray  # (P,)
    pos: np.ndarray  # (P, S)
    target: np.ndarray  # (P, S) the last target sent (NaN before any)
    pending: np.ndarray  # (P, S) an open buy short of its target
    fills: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )


@dataclass(frozen=True)
class _Rules:
    """The per-fill rules of one simulation."""

    commission: np.ndarray  # (S,)
    fixed: float
    slip: np.ndarray  # (S,)
    max_gross: float
    financing: float
    borrow: float
    record: bool

    @property
    def leverage(self) -> float:
        """The multiple of equity that may be borrowed: ``max(max_gross - 1, 0)``."""
        return max(self.max_gross - 1.0, 0.0)


def simulate(  # long: the engine's bar loop in one frame, its state in locals
    sim: SimArrays,
    orders: np.ndarray,
    *,
    commission: float | np.ndarray,
    fixed: float,
    slip: np.ndarray,
    init_cash: float,
    record_fills: bool = True,
    max_gross: float = 1.0,
    financing: float = 0.0,
    borrow: float = 0.0,
    trace: SimTrace | None = None,
) -> tuple[
    np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
]:
    """Run target-weight orders for P parameter sets at once.

    Args:
        sim: the aligned bars.
        orders: (T, P, S) target weights to fill at bar ``i``'s open, NaN = no new order
            (see ``orders_from_weights``); open buys are re-sent by the engine itself.
        commission: relative commission, one number or (S,) per symbol.
        fixed: fixed fee per fill.
        slip: (S,) adverse price fraction per fill.
        init_cash: starting cash of each parameter set.
        record_fills: keep the fills (``(bar, qty, price, fee, value)`` arrays per fill bar).
        max_gross: sets the buying power, ``cash + max(max_gross - 1, 0) * value``.
        financing: annual rate on negative cash (0 = none, the vectorbt-comparable case).
        borrow: annual rate on the short notional (0 = none).
        trace: filled in with the orders sent and the carry costs when given.

    Returns:
        ``equity`` (T, P) at each close, ``cash`` (T, P) and the fill records.
    """
    n_t, n_p, n_s = orders.shape
    rules = _Rules(
        commission=np.broadcast_to(np.asarray(commission, float), (n_s,)),
        fixed=float(fixed),
        slip=np.asarray(slip, float),
        max_gross=float(max_gross),
        financing=float(financing),
        borrow=float(borrow),
        record=record_fills,
    )
    vp, close_ff, has_bar = sim.val_price, np.nan_to_num(sim.close_ffill), sim.has_bar
    ns = sim.index.as_unit("ns").asi8  # the index may hold s/ms/us: count in ns
    years = np.diff(ns, prepend=ns[:1]) / _YEAR_NS
    state = _State(
        cash=np.full(n_p, float(init_cash)),
        pos=np.zeros((n_p, n_s)),
        target=np.full((n_p, n_s), np.nan),
        pending=np.zeros((n_p, n_s), bool),
    )
    if trace is not None:
        trace.sent = np.full(orders.shape, np.nan)
        trace.carry = np.zeros((n_t, n_p))
    equity, cash = np.empty((n_t, n_p)), np.empty((n_t, n_p))
    explicit = np.flatnonzero(~np.isnan(orders).all(axis=(1, 2)))
    carries = rules.financing > 0 or rules.borrow > 0
    i = 0
    while i < n_t:
        if carries and i > 0:
            charged = _charge(state, years[i], close_ff[i - 1], rules)
            if trace is not None:
                trace.carry[i] = charged
        live, retry = _live_orders(state, orders[i], has_bar[i])
        if live is not None:
            sent = _fill_bar(state, i, live, retry, sim.open[i], vp[i], rules)
            if trace is not None:
                trace.sent[i] = sent
        if carries and ((state.cash < 0).any() or (state.pos < 0).any()):
            j = i + 1  # carry costs move the cash every bar
        else:
            nxt = explicit[np.searchsorted(explicit, i, side="right") :]
            j = _next_event(state, i, int(nxt[0]) if nxt.size else n_t, vp, has_bar, rules)
        equity[i:j] = state.cash + close_ff[i:j] @ state.pos.T
        cash[i:j] = state.cash
        i = j
    return equity, cash, state.fills


def _charge(st: _State, years: float, close: np.ndarray, rules: _Rules) -> np.ndarray:
    """Charge financing on negative cash and borrow on shorts for ``years``; (P,) charged."""
    debt = np.maximum(-st.cash, 0.0)
    short = np.maximum(-st.pos, 0.0) @ close
    charged = (rules.financing * debt + rules.borrow * short) * years
    st.cash -= charged
    return charged


def _live_orders(
    st: _State, orders: np.ndarray, has_bar: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """The bar's (P, S) targets: new orders, and open buys re-sent where the symbol has a bar.

    Returns ``(None, ...)`` when nothing is sent; else the targets (NaN = none) and the mask
    of the re-sent ones.
    """
    new = ~np.isnan(orders)
    if new.any():
        st.target = np.where(new, orders, st.target)
        st.pending &= ~new
    retry = st.pending & has_bar[None, :]
    live = new | retry
    if not live.any():
        return None, retry
    return np.where(live, st.target, np.nan), retry


def _next_event(
    st: _State, i: int, nxt: int, vp: np.ndarray, has_bar: np.ndarray, rules: _Rules
) -> int:
    """The first bar after ``i`` and before ``nxt`` (the next new order) where an open buy
    can fill: one of its symbols has a bar and the account has buying power; else ``nxt``."""
    rows = st.pending.any(axis=1)
    if not rows.any() or nxt <= i + 1:
        return nxt
    pending = st.pending[rows].astype(float)
    cash, pos = st.cash[rows], st.pos[rows]
    for lo in range(i + 1, nxt, _SCAN):
        hi = min(lo + _SCAN, nxt)
        value = cash + np.nan_to_num(vp[lo:hi]) @ pos.T  # (L, rows)
        power = cash + rules.leverage * value
        # The same test of "any buying power" as ``_buy``'s, so a batch fills a row's open
        # buys at the same bars as a run of that row alone.
        ready = (has_bar[lo:hi].astype(float) @ pending.T > 0) & (power > _ABS_TOL)
        hit = np.flatnonzero(ready.any(axis=1))
        if hit.size:
            return lo + int(hit[0])
    return nxt


def _fill_bar(
    st: _State,
    i: int,
    target: np.ndarray,
    retry: np.ndarray,
    price: np.ndarray,
    val_price: np.ndarray,
    rules: _Rules,
) -> np.ndarray:
    """Fill one bar's orders (P, S) in place: sells first, then buys, cut pro rata to the
    buying power. Returns the targets actually sent (a re-sent buy that would sell is not)."""
    vp = np.nan_to_num(val_price)
    value = st.cash + st.pos @ vp
    has = ~np.isnan(target) & (value[:, None] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(has, np.nan_to_num(target) * value[:, None] / vp - st.pos, 0.0)
    delta[np.isclose(delta, 0.0, rtol=0, atol=_ABS_TOL)] = 0.0
    drifted = retry & (delta <= 0)  # reached by drift: the open buy is done
    delta[drifted] = 0.0
    qty = np.zeros_like(delta)
    fee = np.zeros_like(delta)
    # Sells: proceeds never limited (shorting is allowed), rejected only if fees exceed them.
    sell_px = price * (1 - rules.slip)
    proceeds = -np.minimum(delta, 0.0) * sell_px
    sell_fee = np.where(delta < 0, proceeds * rules.commission + rules.fixed, 0.0)
    ok = (delta < 0) & (proceeds - sell_fee >= 0)
    qty[ok], fee[ok] = delta[ok], sell_fee[ok]
    st.cash += np.where(ok, proceeds - sell_fee, 0.0).sum(axis=1)
    buy_px = price * (1 + rules.slip)
    if (delta > 0).any():
        _buy(st, delta, buy_px, value, rules, qty, fee)
    wanted = st.pos + np.where(has, delta, 0.0)
    st.pos += qty
    short = (delta > 0) & (wanted - st.pos > _RETRY_TOL * np.abs(wanted))
    st.pending = np.where(np.isnan(target), st.pending, short)
    if rules.record:
        st.fills.append((i, qty, np.where(qty > 0, buy_px, sell_px) * (qty != 0), fee, value))
    return np.where(drifted, np.nan, target)


def _buy(
    st: _State,
    delta: np.ndarray,
    px: np.ndarray,
    value: np.ndarray,
    rules: _Rules,
    qty: np.ndarray,
    fee: np.ndarray,
) -> None:
    """Fill the buys (``delta > 0``) at ``px``, all cut by one fraction per row when the row's
    buying power (``cash + max(max_gross - 1, 0) * value``) does not cover them."""
    buys = delta > 0
    notional = np.where(buys, delta * px * (1 + rules.commission), 0.0)
    n_buys = buys.sum(axis=1)
    need = notional.sum(axis=1) + n_buys * rules.fixed
    power = st.cash + rules.leverage * value
    power = np.where(np.isclose(power, 0.0, rtol=0, atol=_ABS_TOL), 0.0, power)
    enough = (need <= power) | (
        np.abs(need - power)
        <= np.maximum(_REL_TOL * np.maximum(np.abs(need), np.abs(power)), _ABS_TOL)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (power - n_buys * rules.fixed) / (need - n_buys * rules.fixed)
    share = np.where(enough, 1.0, np.clip(np.nan_to_num(share), 0.0, 1.0))
    done = (n_buys > 0) & (power > 0) & (share > 0)
    fill = np.where(buys & done[:, None], delta * share[:, None], 0.0)
    bought = fill > 0
    qty[bought] = fill[bought]
    fee[bought] = (fill * px * rules.commission + rules.fixed)[bought]
    # A cut row spends exactly its buying power (cash 0 at max_gross 1, as in vectorbt).
    spent = np.where(enough, need, power)
    st.cash -= np.where(done, spent, 0.0)


@dataclass(frozen=True)
class BacktestResult:
    """One backtest's outcome.

    Attributes:
        equity: portfolio value at each bar's close (last close for symbols without a bar).
        cash: cash after each bar's fills and carry costs (negative = borrowed).
        positions: units held per symbol after each bar's fills.
        weights: the weights held after each bar's fills, ``units * close / equity`` (what
            was filled, drifting with prices between orders).
        targets: the target weights as decided at each bar (after the ``max_gross`` scaling).
        orders: the target weight of each order sent at each bar (NaN = none), re-sent open
            buys included.
        fills: one row per fill: ``ts, symbol, side, qty, price, fee, value`` (qty > 0, side
            ``buy``/``sell``, price after spread and slippage, portfolio value at the fill).
        carry: financing and borrow costs charged at each bar.
        close: the last known close per symbol at each bar (for marking to market).
        init_cash: starting cash.
    """

    equity: pd.Series
    cash: pd.Series
    positions: pd.DataFrame
    weights: pd.DataFrame
    targets: pd.DataFrame
    orders: pd.DataFrame
    fills: pd.DataFrame
    carry: pd.Series
    close: pd.DataFrame
    init_cash: float

    @property
    def fees_paid(self) -> float:
        """Total fees, spread and slippage excluded (they are in the fill prices)."""
        return float(self.fills["fee"].sum())

    @property
    def carry_paid(self) -> float:
        """Total financing and borrow costs."""
        return float(self.carry.sum())

    @property
    def traded_notional(self) -> float:
        """Sum of ``qty * price`` over all fills."""
        return float((self.fills["qty"] * self.fills["price"]).sum())

    @property
    def turnover(self) -> float:
        """Traded notional over the average equity (1.0 = the book traded once)."""
        mean_equity = float(self.equity.mean())
        return self.traded_notional / mean_equity if mean_equity > 0 else float("nan")


def _check_run(init_cash: float, max_gross: float) -> None:
    if not init_cash > 0 or not max_gross > 0:
        raise InvalidInputError(
            f"expected init_cash > 0 and max_gross > 0, was {init_cash}, {max_gross}"
        )


def _rates(costs: Costs, symbols: list[str]) -> dict[str, Any]:
    """``simulate``'s cost arguments for ``symbols``."""
    return {
        "commission": np.array([costs.commission_for(s) for s in symbols]),
        "fixed": costs.fixed,
        "slip": np.array([costs.slip(s) for s in symbols]),
        "financing": costs.financing,
        "borrow": costs.borrow,
    }


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
        costs: trading and carry costs (defaults of ``Costs()`` when omitted).
        init_cash: starting cash, > 0.
        max_gross: the most ``sum(|weight|)`` a decision may hold (rows above it are scaled
            down) and the buying power's multiple of equity (default 1.0: no leverage).

    Raises:
        InvalidInputError: bad bars, weights outside [-1, 1] or naming unknown symbols,
            costs for symbols that are not in ``bars``, a non-positive ``init_cash`` or
            ``max_gross``.
    """
    costs = costs or Costs()
    _check_run(init_cash, max_gross)
    sim = align_bars(bars)
    costs.check_symbols(sim.symbols)
    w = scale_gross(_weights_matrix(weights, sim), max_gross)
    orders = orders_from_weights(w, sim.has_bar)[:, None, :]
    trace = SimTrace()
    equity, cash, fills = simulate(
        sim,
        orders,
        init_cash=init_cash,
        max_gross=max_gross,
        trace=trace,
        **_rates(costs, sim.symbols),
    )
    frame = lambda a: pd.DataFrame(a, index=sim.index, columns=sim.symbols)  # noqa: E731
    positions = _positions_frame(fills, sim)
    close = frame(sim.close_ffill)
    held = (positions * close.fillna(0.0)).div(equity[:, 0], axis=0)
    return BacktestResult(
        equity=pd.Series(equity[:, 0], index=sim.index, name="equity"),
        cash=pd.Series(cash[:, 0], index=sim.index, name="cash"),
        positions=positions,
        weights=held,
        targets=frame(w),
        orders=frame(trace.sent[:, 0, :]),
        fills=_fills_frame(fills, sim),
        carry=pd.Series(trace.carry[:, 0], index=sim.index, name="carry"),
        close=close,
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
    _check_run(init_cash, max_gross)
    sim = align_bars(bars)
    costs.check_symbols(sim.symbols)
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
    equity, _, _ = simulate(
        sim,
        orders,
        init_cash=init_cash,
        max_gross=max_gross,
        record_fills=False,
        **_rates(costs, sim.symbols),
    )
    return pd.DataFrame(equity, index=sim.index)
