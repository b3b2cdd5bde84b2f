"""The HTML report is one offline file with its figures and tables."""

from __future__ import annotations

import re

from kitrade.backtest.engine import run_backtest
from kitrade.backtest.metrics import summarize
from kitrade.backtest.quality import forecast_quality
from kitrade.backtest.report import write_report
from kitrade.backtest.strategies import parse_strategy, target_weights


def test_report_is_self_contained_and_has_the_figures(tmp_path, bars3, forecasts3) -> None:
    bars = {s: bars3[s] for s in ("GOOG", "BTCUSD")}
    result = run_backtest(
        bars, target_weights(parse_strategy("sma_cross", {"fast": 5, "slow": 20}), bars)
    )
    hold = run_backtest(bars, target_weights(parse_strategy("buy_and_hold", {}), bars))
    path = write_report(
        tmp_path / "out" / "report.html",
        result,
        bars=bars,
        metrics=summarize(result, timeframe="D1"),
        benchmark=hold.equity,
        quality=forecast_quality(forecasts3, bars, step=1),
        folds=[{"fold": 1, "train_end": "2010-01-01", "test_end": "2011-01-01", "rmae": 0.98}],
    )
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text)
    assert not re.search(r"<link[^>]*https?://", text)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    for div in ("fig-equity", "fig-drawdown", "fig-trades-GOOG", "fig-trades-BTCUSD"):
        assert f'id="{div}"' in text
    assert 'id="metrics"' in text and "sharpe" in text
    assert 'id="folds"' in text and "2010-01-01" in text
    assert "buy and hold" in text and "coverage_80" in text


def test_report_states_costs_settings_and_quality_at_every_step(tmp_path, bars3, forecasts3):
    from kitrade.backtest.engine import make_costs

    bars = {"GOOG": bars3["GOOG"]}
    costs = make_costs(asset_classes={"GOOG": "stock"}, spread={"GOOG": 0.001})
    result = run_backtest(
        bars, target_weights(parse_strategy("buy_and_hold", {}), bars), costs=costs
    )
    quality = {f"step_{h}": forecast_quality(forecasts3, bars, step=h) for h in (1, 2, 3, 4, 5)}
    text = write_report(
        tmp_path / "report.html",
        result,
        bars=bars,
        metrics={"strategy": summarize(result, timeframe="D1")},
        quality=quality,
        costs=costs.model_dump() | {"max_gross": 1.0},
        settings={"bars per year (annualisation)": 252.0, "model: max_steps": 300},
    ).read_text(encoding="utf-8")
    costs_table = re.search(r'<table id="costs">.*?</table>', text).group(0)
    for shown in ("financing", "0.05", "borrow", "GOOG: 0.001", "*: 0.0002", "max_gross"):
        assert shown in costs_table, shown
    settings_table = re.search(r'<table id="settings">.*?</table>', text).group(0)
    assert "bars per year" in settings_table and "252" in settings_table
    assert "max_steps" in settings_table
    quality_table = re.search(r'<table id="quality">.*?</table>', text).group(0)
    steps = re.findall(r"<tr><td>(\d+)</td>", quality_table)
    assert steps == ["1", "2", "3", "4", "5"]
    assert "rmae" in quality_table and "coverage_95" in quality_table
    assert "median" in text.split('id="quality"')[0].rsplit("<h2>", 1)[-1]
