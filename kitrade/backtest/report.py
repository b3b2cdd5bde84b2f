"""A backtest's HTML report: one self-contained file that opens offline.

plotly.js is inlined from the installed ``plotly`` wheel (as the dashboard serves it), so
the file loads nothing from the network. Figures: equity against buy-and-hold, drawdown,
and each symbol's candlesticks with the fills; tables: the settings the result rests on (costs,
bars per year, model), the metrics, forecast quality per forecast step and the walk-forward
folds (any list of dicts).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from kitrade.backtest.engine import BacktestResult
from kitrade.backtest.metrics import drawdown

__all__ = ["render_report", "write_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d232a;max-width:1200px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccd;padding:3px 8px;text-align:right}
th{background:#f1f3f7} td:first-child,th:first-child{text-align:left}
"""


def _plotly_js() -> str:
    text = resources.files("plotly").joinpath("package_data/plotly.min.js").read_text("utf-8")
    return text.replace("</script", "<\\/script")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.6g}"
    return html.escape(str(value))


def _table(rows: Sequence[Mapping[str, Any]], table_id: str) -> str:
    if not rows:
        return f'<p id="{table_id}">none</p>'
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _value_text(value: Any) -> Any:
    """A per-symbol mapping as ``"A: x, B: y"``; anything else as it is."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return value


def _setting_rows(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"setting": k, "value": _value_text(v)} for k, v in settings.items()]


def _quality_rows(quality: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per forecast step (``{"step_1": {...}, "step_5": {...}}``), or one row per
    figure when a single step's figures are given."""
    if quality and all(isinstance(v, Mapping) for v in quality.values()):
        steps = sorted(quality, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
        return [{"step": k.rsplit("_", 1)[-1]} | dict(quality[k]) for k in steps]
    return [{"figure": k, "value": v} for k, v in quality.items()]


_QUALITY_NOTE = (
    "<p>Scored on the forecasts issued at the decision bars, pooled over symbols. The point "
    "forecast is the <b>median</b> (the 50 % quantile; the stored forecasts call its column "
    "<code>mean</code>): <code>mae</code> is the median's absolute error relative to the "
    "issuing close, <code>rmae</code> that over the random walk's, <code>hit_rate</code> "
    "the share of bars where the median called the direction.</p>"
)


def _metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric; one column per run when runs are given side by side."""
    if metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        names = list(dict.fromkeys(k for run in metrics.values() for k in run))
        return [{"metric": m} | {run: vals.get(m) for run, vals in metrics.items()} for m in names]
    return [{"metric": k, "value": v} for k, v in metrics.items()]


def _equity_figure(result: BacktestResult, benchmark: pd.Series | None) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=result.equity.index, y=result.equity, name="strategy"))
    if benchmark is not None:
        fig.add_trace(go.Scatter(x=benchmark.index, y=benchmark, name="buy and hold"))
    fig.update_layout(title="Equity", height=360, margin={"t": 40, "b": 30})
    return fig


def _drawdown_figure(result: BacktestResult) -> go.Figure:
    dd = drawdown(result.equity)
    fig = go.Figure(go.Scatter(x=dd.index, y=dd, fill="tozeroy", name="drawdown"))
    fig.update_layout(
        title="Drawdown", height=260, margin={"t": 40, "b": 30}, yaxis_tickformat=".0%"
    )
    return fig


def _trades_figure(symbol: str, bars: pd.DataFrame, fills: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Candlestick(
            x=bars.index,
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name=symbol,
        )
    )
    mine = fills[fills["symbol"] == symbol]
    for side, marker in (("buy", "triangle-up"), ("sell", "triangle-down")):
        part = mine[mine["side"] == side]
        fig.add_trace(
            go.Scatter(
                x=part["ts"],
                y=part["price"],
                mode="markers",
                name=side,
                marker={"symbol": marker, "size": 9},
            )
        )
    fig.update_layout(
        title=f"Trades: {symbol}",
        height=380,
        xaxis_rangeslider_visible=False,
        margin={"t": 40, "b": 30},
    )
    return fig


def render_report(
    result: BacktestResult,
    *,
    bars: Mapping[str, pd.DataFrame],
    metrics: Mapping[str, Any],
    benchmark: pd.Series | None = None,
    quality: Mapping[str, Any] | None = None,
    folds: Sequence[Mapping[str, Any]] = (),
    checks: Sequence[Mapping[str, Any]] = (),
    costs: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    title: str = "kitrade backtest",
) -> str:
    """The report as one HTML string (see ``write_report``).

    ``metrics`` is either one run's ``{metric: value}`` or several runs side by side,
    ``{run name: {metric: value}}`` (strategy, buy_and_hold, naive...); ``quality`` one
    step's figures or ``{"step_h": {figure: value}}`` per step; ``checks`` are rows of the
    look-ahead and lag tests; ``costs`` the costs the runs paid (per-symbol values as
    mappings); ``settings`` anything else the figures rest on (period, bars per year, the
    model's configuration).
    """
    figures = [
        ("equity", _equity_figure(result, benchmark)),
        ("drawdown", _drawdown_figure(result)),
    ]
    figures += [
        (f"trades-{s}", _trades_figure(s, frame, result.fills)) for s, frame in bars.items()
    ]
    divs = "\n".join(
        fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}")
        for name, fig in figures
    )
    metric_rows = _metric_rows(metrics)
    costs_rows = _setting_rows(costs or {})
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style><script>{_plotly_js()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{divs}"
        f"<h2>Settings</h2>{_table(_setting_rows(settings or {}), 'settings')}"
        f"<h2>Costs</h2>{_table(costs_rows, 'costs')}"
        f"<h2>Metrics</h2>{_table(metric_rows, 'metrics')}"
        f"<h2>Forecast quality by step</h2>{_QUALITY_NOTE}"
        f"{_table(_quality_rows(quality or {}), 'quality')}"
        f"<h2>Walk-forward folds</h2>{_table(list(folds), 'folds')}"
        f"<h2>Look-ahead checks</h2>{_table(list(checks), 'checks')}"
        "</body></html>"
    )


def write_report(path: str | Path, result: BacktestResult, **kwargs: Any) -> Path:
    """Write the self-contained HTML report to ``path`` and return it.

    Args:
        path: the file to write (parent folders are created).
        result: the backtest.
        **kwargs: ``bars``, ``metrics``, ``benchmark``, ``quality``, ``folds``, ``checks``,
            ``costs``, ``settings``, ``title`` as in ``render_report``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(result, **kwargs), encoding="utf-8")
    return target
