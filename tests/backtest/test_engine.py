"""The execution and costs engine: hand-checked fills, vectorbt equality, costs, gross
exposure, truncation (no lookahead)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.engine import (
    Costs,
    align_bars,
    make_costs,
    orders_from_weights,
    run_backtest,
    scale_gross,
)
from kitrade.errors import InvalidInputError


def _random_weights(bars: dict[str, pd.DataFrame], seed: int, hold: float = 0.95) -> pd.DataFrame:
    """Weights that change on about 5 % of each symbol's bars, to random levels in [-1, 1]."""
    sim = align_bars(bars)
    rng = np.random.default_rng(seed)
    draw = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=sim.open.shape)
    change = rng.random(sim.open.shape) > hold
    frame = pd.DataFrame(
        np.where(change & sim.has_bar, draw, np.nan), index=sim.index, columns=sim.symbols
    )
    return frame.ffill().fillna(0.0)


def _tiny_bars() -> dict[str, pd.DataFrame]:
    idx = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    frame = pd.DataFrame(
        {
            "open": [10.0, 11.0, 12.0, 13.0],
            "high": 14.0,
            "low": 9.0,
            "close": [10.5, 11.5, 12.5, 13.5],
            "volume": 1.0,
        },
        index=idx,
    )
    return {"X": frame}


def test_decision_fills_at_next_open_with_costs_by_hand() -> None:
    bars = _tiny_bars()
    weights = pd.DataFrame({"X": [1.0, 1.0, 0.0, 0.0]}, index=bars["X"].index)
    costs = make_costs(commission=0.01, fixed=1.0, spread={"*": 0.02}, slippage={"*": 0.0})
    result = run_backtest(bars, weights, costs=costs, init_cash=1000.0)
    # Bar 1: buy 1000 / 11 units wanted, at 11 * 1.01, but 1000 cash must also pay 1 % + 1:
    # the order is cut to (1000 - 1) / 1.01 / 11.11 units.
    qty = (1000.0 - 1.0) / 1.01 / (11.0 * 1.01)
    fills = result.fills
    assert list(fills["side"]) == ["buy", "sell"]
    assert fills["qty"].iloc[0] == pytest.approx(qty)
    assert fills["price"].iloc[0] == pytest.approx(11.11)
    assert result.cash.iloc[1] == pytest.approx(0.0, abs=1e-9)
    assert result.equity.iloc[1] == pytest.approx(qty * 11.5)
    # Bar 3: decision of bar 2 (0) fills at bar 3's open minus half the spread.
    proceeds = qty * 13.0 * 0.99
    assert fills["price"].iloc[1] == pytest.approx(12.87)
    assert result.equity.iloc[3] == pytest.approx(proceeds - proceeds * 0.01 - 1.0)
    assert result.fees_paid == pytest.approx(fills["fee"].sum())
    assert result.equity.iloc[0] == 1000.0


@pytest.mark.parametrize(
    ("commission", "fixed", "spread", "slippage", "seed"),
    [(0.0, 0.0, 0.0, 0.0, 1), (0.001, 0.0, 0.0004, 0.0002, 2), (0.0005, 2.0, 0.001, 0.0, 3)],
)
def test_equity_equals_vectorbt_from_orders(
    bars3, commission, fixed, spread, slippage, seed
) -> None:
    """Unlevered and without carry costs (what vectorbt expresses), given the orders the
    engine sent (its re-sent open buys included), the equity is vectorbt's."""
    import vectorbt as vbt  # a test dependency (pyproject [test]): missing, this fails

    weights = _random_weights(bars3, seed)
    costs = make_costs(
        commission=commission,
        fixed=fixed,
        spread={"*": spread},
        slippage={"*": slippage},
        financing=0.0,
        borrow=0.0,
    )
    ours = run_backtest(bars3, weights, costs=costs, init_cash=100_000.0)
    sim = align_bars(bars3)
    changes = orders_from_weights(scale_gross(weights.to_numpy(), 1.0), sim.has_bar)
    resent = ~np.isnan(ours.orders.to_numpy()) & np.isnan(changes)
    frame = lambda a: pd.DataFrame(a, index=sim.index, columns=sim.symbols)  # noqa: E731
    pf = vbt.Portfolio.from_orders(
        close=frame(sim.close),
        size=ours.orders,
        size_type="targetpercent",
        price=frame(sim.open),
        val_price=frame(sim.val_price),
        fees=commission,
        fixed_fees=fixed,
        slippage=costs.slip("any"),
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
    )
    theirs = pf.value().to_numpy()
    assert len(ours.fills) == pf.orders.count() > 50
    np.testing.assert_allclose(ours.equity.to_numpy(), theirs, rtol=1e-6)
    assert ours.carry_paid == 0.0
    print(f"re-sent open buys: {int(resent.sum())}")


def test_more_cost_never_raises_the_result(bars3) -> None:
    weights = _random_weights(bars3, 7, hold=0.97).clip(lower=0.0)
    finals = []
    for scale in (0.0, 0.5, 1.0, 2.0, 4.0):
        costs = make_costs(
            commission=0.0005 * scale,
            fixed=1.0 * scale,
            spread={"*": 0.0002 * scale},
            slippage={"*": 0.0001 * scale},
        )
        finals.append(run_backtest(bars3, weights, costs=costs).equity.iloc[-1])
    assert all(a > b for a, b in itertools.pairwise(finals)), finals


@pytest.mark.parametrize("max_gross", [0.5, 1.0])
def test_gross_exposure_at_each_fill_stays_within_max_gross(bars3, max_gross) -> None:
    """Decisions are scaled to ``max_gross``; each traded symbol reaches (at most) its share."""
    weights = _random_weights(bars3, 11)
    assert weights.abs().sum(axis=1).max() > max_gross  # the input does ask for more
    result = run_backtest(bars3, weights, max_gross=max_gross)
    assert result.targets.abs().sum(axis=1).max() <= max_gross + 1e-12
    sim = align_bars(bars3)
    decided = result.targets.shift(1).to_numpy()
    for fill in result.fills.itertuples():
        row = sim.index.get_loc(fill.ts)
        col = sim.symbols.index(fill.symbol)
        held = result.positions.iloc[row, col] * sim.open[row, col]
        assert abs(held) / fill.value <= abs(decided[row, col]) * (1 + 1e-9) + 1e-12
    # One calendar, all symbols re-decided together: the whole book stays within max_gross.
    one = {"A": bars3["GOOG"], "B": bars3["GOOG"] * 1.5}
    both = pd.DataFrame(1.0, index=one["A"].index, columns=["A", "B"])
    both.iloc[::50] = 0.9  # every change re-sends both symbols
    book = run_backtest(one, both, max_gross=max_gross)
    exposure = (
        (book.positions * pd.DataFrame({s: f["close"] for s, f in one.items()})).abs().sum(axis=1)
    )
    fill_ts = book.fills["ts"].unique()
    assert (exposure.loc[fill_ts] / book.equity.loc[fill_ts]).max() <= max_gross * 1.05


@pytest.mark.parametrize("max_gross", [1.0, 2.0])
def test_results_before_a_cut_do_not_depend_on_later_bars(bars3, max_gross) -> None:
    """Also levered: open buys re-sent and financing/borrow charged stay point in time."""
    weights = _random_weights(bars3, 5)
    costs = Costs()
    full = run_backtest(bars3, weights, costs=costs, max_gross=max_gross)
    if max_gross > 1:
        assert full.carry_paid > 0 and (full.cash < 0).any()
    rng = np.random.default_rng(3)
    for cut in rng.choice(full.equity.index[10:], size=8, replace=False):
        short_bars = {s: f[f.index <= cut] for s, f in bars3.items()}
        short = run_backtest(
            short_bars, weights[weights.index <= cut], costs=costs, max_gross=max_gross
        )
        n = len(short.equity)
        assert short.equity.equals(full.equity.iloc[:n])
        assert short.positions.equals(full.positions.iloc[:n])
        assert short.orders.equals(full.orders.iloc[:n])
        assert short.fills.equals(full.fills[full.fills["ts"] <= cut].reset_index(drop=True))


@pytest.mark.parametrize(
    "values",
    [
        {"commission": -0.1},
        {"fixed": -1},
        {"spread": {"*": -0.01}},
        {"slippage": {"GOOG": -1e-4}},
        {"bogus": 1},
    ],
)
def test_bad_costs_are_refused_naming_the_field(values) -> None:
    with pytest.raises(InvalidInputError) as err:
        make_costs(**values)
    assert next(iter(values)) in str(err.value)


def test_weights_outside_the_range_or_for_unknown_symbols_are_refused() -> None:
    bars = _tiny_bars()
    with pytest.raises(InvalidInputError, match=r"\[-1, 1\]"):
        run_backtest(bars, pd.DataFrame({"X": [1.5, 0, 0, 0]}, index=bars["X"].index))
    with pytest.raises(InvalidInputError, match="Y"):
        run_backtest(bars, pd.DataFrame({"Y": [1.0, 0, 0, 0]}, index=bars["X"].index))
    with pytest.raises(InvalidInputError, match="max_gross"):
        run_backtest(bars, pd.DataFrame({"X": [1.0, 0, 0, 0]}, index=bars["X"].index), max_gross=0)


@pytest.mark.parametrize("max_gross", [1.0, 2.0])
def test_a_batch_of_weight_sets_equals_one_backtest_each(bars3, forecasts3, max_gross) -> None:
    from kitrade.backtest.engine import run_batch
    from kitrade.backtest.strategies import forecast_threshold_array, parse_strategy, target_weights

    sets = [
        parse_strategy(
            "forecast_threshold", {"horizon": h, "enter": e, "allow_short": s, "hold_bars": hb}
        )
        for h, e, s, hb in [
            (1, 0.001, True, 0),
            (3, 0.004, False, 5),
            (5, 0.0, True, 2),
            (1, 0.02, True, 0),
        ]
    ]
    costs = make_costs(commission=0.001, fixed=1.0)
    weights = forecast_threshold_array(sets, bars3, forecasts3)
    batch = run_batch(bars3, weights, costs=costs, max_gross=max_gross)
    for k, params in enumerate(sets):
        single = run_backtest(
            bars3, target_weights(params, bars3, forecasts3), costs=costs, max_gross=max_gross
        )
        np.testing.assert_allclose(batch[k].to_numpy(), single.equity.to_numpy(), rtol=1e-12)
    with pytest.raises(InvalidInputError, match="shape"):
        run_batch(bars3, np.zeros((5, 2, 3)))


def test_costs_take_a_number_for_all_symbols_or_a_value_per_symbol() -> None:
    costs = make_costs(spread=0.001, slippage={"GOOG": 0.0005, "*": 0.0001})
    assert costs.slip("EURUSD") == pytest.approx(0.0005 + 0.0001)
    assert costs.slip("GOOG") == pytest.approx(0.0005 + 0.0005)
    assert costs.round_trip("GOOG") == pytest.approx(2 * (0.0005 + 0.001))
    with pytest.raises(InvalidInputError, match="spread"):
        make_costs(spread=-0.001)


def test_weights_at_timestamps_that_are_no_bar_are_refused() -> None:
    bars = _tiny_bars()
    off = bars["X"].index + pd.Timedelta(hours=1)
    with pytest.raises(InvalidInputError, match="no bar"):
        run_backtest(bars, pd.DataFrame({"X": 1.0}, index=off))


FREE = {"commission": 0.0, "spread": 0.0, "slippage": 0.0, "financing": 0.0, "borrow": 0.0}


def _flat_bars(prices: dict[str, float], days: int = 5) -> dict[str, pd.DataFrame]:
    """Bars of constant price per symbol on one daily calendar (so weights are exact)."""
    idx = pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC")
    return {
        s: pd.DataFrame({"open": p, "high": p, "low": p, "close": p, "volume": 1.0}, index=idx)
        for s, p in prices.items()
    }


def test_two_symbols_at_weight_one_with_max_gross_two_are_both_held_in_full() -> None:
    bars = _flat_bars({"A": 100.0, "B": 40.0})
    weights = pd.DataFrame(1.0, index=bars["A"].index, columns=["A", "B"])
    result = run_backtest(bars, weights, costs=make_costs(**FREE), max_gross=2.0)
    assert result.weights.iloc[-1].tolist() == pytest.approx([1.0, 1.0])
    assert result.cash.iloc[-1] == pytest.approx(-100_000.0)
    # With the default costs too (commission, spread, slippage, financing): about 100 % each.
    costed = run_backtest(bars, weights, max_gross=2.0)
    assert costed.weights.iloc[-1].tolist() == pytest.approx([1.0, 1.0], abs=0.01)


def test_buy_and_hold_with_max_gross_two_is_levered() -> None:
    from kitrade.backtest.strategies import parse_strategy, target_weights

    rng = np.random.default_rng(4)
    idx = pd.date_range("2024-01-01", periods=60, freq="D", tz="UTC")
    bars = {}
    for s in ("A", "B"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(idx))))
        bars[s] = pd.DataFrame(
            {"open": np.r_[100.0, close[:-1]], "close": close, "high": 0, "low": 0}, index=idx
        )
    weights = target_weights(parse_strategy("buy_and_hold", {}), bars)
    result = run_backtest(bars, weights, costs=make_costs(**FREE), max_gross=2.0)
    # By hand: each symbol bought for the whole equity at bar 1's open, held to the end.
    units = {s: 100_000.0 / f["open"].iloc[1] for s, f in bars.items()}
    expected = 100_000.0 + sum(
        u * (bars[s]["close"] - bars[s]["open"].iloc[1]) for s, u in units.items()
    )
    np.testing.assert_allclose(result.equity.iloc[1:], expected.iloc[1:], rtol=1e-12)
    assert result.weights.iloc[1].sum() == pytest.approx(2.0, rel=0.05)


def test_a_capped_buy_fills_pro_rata_and_the_rest_on_a_later_bar() -> None:
    """C is held and has no bar on day 2, so the buys of A and B there only get the
    borrowing room (1x equity at max_gross 2): both fill 2/3 of their targets, whatever
    their column order; C's sale on day 3 frees the cash and the open buys fill then."""
    bars = _flat_bars({"A": 10.0, "B": 20.0, "C": 50.0})
    bars["C"] = bars["C"].drop(bars["C"].index[2])
    idx = bars["A"].index
    weights = pd.DataFrame(
        {"A": [0, 1.0, 1.0, 1.0, 1.0], "B": [0, 0.5, 0.5, 0.5, 0.5], "C": [1.0, 0, 0, 0, 0]},
        index=idx,
    )
    for order in (["A", "B", "C"], ["C", "B", "A"]):
        result = run_backtest(
            {s: bars[s] for s in order}, weights[order], costs=make_costs(**FREE), max_gross=2.0
        )
        held = result.weights[["A", "B", "C"]]
        assert held.iloc[1].tolist() == pytest.approx([0.0, 0.0, 1.0])
        assert held.iloc[2].tolist() == pytest.approx([2 / 3, 1 / 3, 1.0])
        assert held.iloc[3].tolist() == pytest.approx([1.0, 0.5, 0.0])
        assert result.orders.loc[idx[3], ["A", "B"]].tolist() == [1.0, 0.5]  # re-sent
        assert result.orders.loc[idx[4]].isna().all()  # filled: nothing open any more
        assert result.equity.tolist() == pytest.approx([100_000.0] * 5)


def test_financing_and_borrow_are_charged_by_the_time_between_bars() -> None:
    idx = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06"], tz="UTC")
    flat = pd.DataFrame({"open": 100.0, "close": 100.0, "high": 100.0, "low": 100.0}, index=idx)
    bars = {"A": flat, "B": flat * 0.5}
    levered = pd.DataFrame({"A": 1.0, "B": 1.0}, index=idx)
    costs = make_costs(**(FREE | {"financing": 0.05, "borrow": 0.01}))
    result = run_backtest(bars, levered, costs=costs, max_gross=2.0)
    # Bar 1 borrows 100,000; interest on the debt for 3 days, then for 1 day (compounding).
    day = 1 / 365.25
    cash2 = -100_000.0 * (1 + 0.05 * 3 * day)
    cash3 = cash2 * (1 + 0.05 * day)
    assert result.cash.tolist() == pytest.approx([100_000.0, -100_000.0, cash2, cash3], rel=1e-12)
    assert result.equity.iloc[3] == pytest.approx(cash3 + 200_000.0, rel=1e-12)
    assert result.carry_paid == pytest.approx(-100_000.0 - cash3, rel=1e-12)
    # A short: its proceeds are cash (no financing), its notional pays the borrow fee.
    short = run_backtest(bars, levered.assign(A=-1.0, B=0.0), costs=costs)
    fee2 = 100_000.0 * 0.01 * 3 * day
    assert short.carry.tolist() == pytest.approx([0.0, 0.0, fee2, 100_000.0 * 0.01 * day])
    assert short.equity.iloc[3] == pytest.approx(100_000.0 - short.carry_paid, rel=1e-12)


def test_per_symbol_costs_keep_the_default_for_the_other_symbols() -> None:
    costs = make_costs(spread={"GOOG": 0.001}, slippage={"BTCUSD": 0.0005})
    assert costs.slip("GOOG") == pytest.approx(0.0005 + 0.0001)
    assert costs.slip("EURUSD") == pytest.approx(0.0001 + 0.0001)  # the defaults
    assert costs.slip("BTCUSD") == pytest.approx(0.0001 + 0.0005)
    assert make_costs(commission={"GOOG": 0.001}).commission_for("EURUSD") == 0.0005


def test_costs_for_symbols_outside_the_backtest_are_refused_naming_them(bars3) -> None:
    weights = _random_weights(bars3, 1)
    for values in ({"spread": {"MSFT": 0.001}}, {"slippage": {"GOOG": 0.0, "AAPL": 1e-4}}):
        with pytest.raises(InvalidInputError) as err:
            run_backtest(bars3, weights, costs=make_costs(**values))
        assert ("MSFT" if "spread" in values else "AAPL") in str(err.value)
        assert "GOOG" not in str(err.value).split("expected")[0]
    with pytest.raises(InvalidInputError, match="commission: TSLA"):
        make_costs(asset_classes={"GOOG": "stock"}, commission={"TSLA": 0.001})


def test_commission_defaults_come_from_the_asset_class() -> None:
    classes = {"EURUSD": "fx", "BTCUSD": "crypto", "GOOG": "stock", "XAU": "commodity"}
    costs = make_costs(asset_classes=classes)
    assert {s: costs.commission_for(s) for s in classes} == {
        "EURUSD": 0.00002,
        "BTCUSD": 0.001,
        "GOOG": 0.0005,
        "XAU": 0.0001,
    }
    # One symbol given: the others keep their class's default; a number or "*" sets all.
    mixed = make_costs(asset_classes=classes, commission={"GOOG": 0.002})
    assert (mixed.commission_for("GOOG"), mixed.commission_for("EURUSD")) == (0.002, 0.00002)
    assert make_costs(asset_classes=classes, commission=0.0003).commission_for("EURUSD") == 0.0003
    star = make_costs(asset_classes=classes, commission={"*": 0.0003})
    assert star.commission_for("BTCUSD") == 0.0003


def test_re_sent_open_buys_replay_in_vectorbt() -> None:
    """Unlevered: A and B cannot buy on day 2 (all cash is in C, which has no bar then);
    their orders stay open and fill on day 3 when C is sold. vectorbt, given the orders the
    engine sent, ends at the same equity."""
    import vectorbt as vbt  # a test dependency (pyproject [test]): missing, this fails

    rng = np.random.default_rng(8)
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    bars = {}
    for s in ("A", "B", "C"):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(idx))))
        bars[s] = pd.DataFrame({"open": np.r_[50.0, close[:-1]], "close": close}, index=idx)
    bars["C"] = bars["C"].drop(idx[2])
    weights = pd.DataFrame(
        {"A": [0, 0.6, 0.6, 0.6, 0.6, 0.6], "B": [0, 0.4] + [0.4] * 4, "C": [1.0] + [0] * 5},
        index=idx,
    )
    result = run_backtest(bars, weights, costs=make_costs(**FREE))
    assert result.orders.loc[idx[3], ["A", "B"]].tolist() == [0.6, 0.4]  # re-sent
    assert result.weights.loc[idx[2], ["A", "B"]].tolist() == [0.0, 0.0]
    sim = align_bars(bars)
    frame = lambda a: pd.DataFrame(a, index=sim.index, columns=sim.symbols)  # noqa: E731
    pf = vbt.Portfolio.from_orders(
        close=frame(sim.close),
        size=result.orders,
        size_type="targetpercent",
        price=frame(sim.open),
        val_price=frame(sim.val_price),
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
    )
    np.testing.assert_allclose(result.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-9)
