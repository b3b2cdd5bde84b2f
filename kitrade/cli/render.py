"""Tables and lines the commands print (rich); no data access here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "answer_lines",
    "backtest_metrics_table",
    "backtests_table",
    "bars_table",
    "calibration_table",
    "coverage_cell",
    "documents_table",
    "err",
    "evaluation_lines",
    "evaluation_table",
    "fmt",
    "fmt_ts",
    "forecast_quality_table",
    "lag_test_table",
    "lookahead_table",
    "out",
    "progress_table",
    "score_table",
    "store_table",
    "strategies_table",
    "symbols_table",
    "sync_table",
    "versions_table",
]

out = Console()
err = Console(stderr=True)


def fmt_ts(ts: object) -> str:
    """``YYYY-MM-DD HH:MM`` or ``-``."""
    if ts is None:
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]


def fmt(v: object, spec: str = ".3f") -> str:
    """``format(v, spec)`` or ``-`` for None."""
    return "-" if v is None else format(v, spec)


def store_table(st: Any) -> Table:
    """The database's mode, place and state (a ``StoreStatus``)."""
    table = Table(title="database", show_header=False)
    table.add_row("mode", st.mode)
    table.add_row("where", st.where)
    table.add_row("running", "yes" if st.running else f"no ({st.error})")
    if st.running:
        table.add_row("server", st.server_version or "-")
        table.add_row("bars storage", st.bars_storage or "(not migrated)")
        table.add_row("migrations", ", ".join(map(str, st.migrations)) or "none")
        table.add_row("symbols / bars", f"{st.symbols} / {st.bars}")
    return table


def symbols_table(rows: Iterable[tuple[Any, Any]]) -> Table:
    """Symbols with their bars and sync state."""
    table = Table("symbol", "tf", "class", "active", "bars", "first", "last", "close", "sync")
    for s, st in rows:
        table.add_row(
            s.symbol,
            s.timeframe,
            s.asset_class,
            "yes" if s.active else "no",
            str(s.bars),
            fmt_ts(s.first_bar),
            fmt_ts(s.last_bar),
            "-" if s.last_close is None else f"{s.last_close:.6g}",
            (st.status + (f": {st.error}" if st.error else "")) if st else "never",
        )
    return table


def strategies_table(rows: Iterable[Any]) -> Table:
    """Strategies."""
    table = Table("name", "kind", "symbols", "tf", "parameters")
    for s in rows:
        table.add_row(s.name, s.kind, ",".join(s.symbols), s.timeframe, str(s.parameters))
    return table


def sync_table(report: Any) -> Table:
    """One row per synced symbol (a ``SyncReport``)."""
    table = Table("symbol", "status", "new bars", "first", "last", "error")
    colours = {"ok": "green", "up_to_date": "dim", "failed": "red"}
    for r in report.results:
        table.add_row(
            r.symbol,
            f"[{colours[r.status]}]{r.status}[/]",
            str(r.new_bars),
            fmt_ts(r.first_ts),
            fmt_ts(r.last_ts),
            r.error or "",
        )
    return table


def bars_table(symbol: str, frame: pd.DataFrame) -> Table:
    """OHLCV rows."""
    table = Table("ts (UTC)", "open", "high", "low", "close", "volume", title=symbol)
    for row in frame.itertuples(index=False):
        table.add_row(
            row.ts.strftime("%Y-%m-%d %H:%M"),
            f"{row.open:.6g}",
            f"{row.high:.6g}",
            f"{row.low:.6g}",
            f"{row.close:.6g}",
            f"{row.volume:.6g}",
        )
    return table


_STATE_COLOURS = {
    "done": "green",
    "failed": "red",
    "skipped": "dim",
    "running": "cyan",
    "queued": "yellow",
}


def progress_table(run: dict[str, Any]) -> Table:
    """A training run's per-symbol progress (a ``RunProgress`` as JSON)."""
    title = escape(
        f"run {run.get('run_id')}  [{run.get('status') or 'running'}]  "
        f"trigger={run.get('trigger') or '-'}"
    )
    table = Table(
        "symbol",
        "state",
        "try",
        "step",
        "%",
        "train loss",
        "val loss",
        "eta",
        "detail",
        title=title,
    )
    for s in run.get("symbols", []):
        eta = s.get("eta_s")
        detail = s.get("error") or s.get("detail") or ""
        table.add_row(
            s["symbol"],
            f"[{_STATE_COLOURS.get(s['state'], 'white')}]{s['state']}[/]",
            str(s["attempt"]),
            f"{s['step']}/{s['max_steps']}",
            f"{s.get('percent', 0):.0f}",
            "-" if s.get("train_loss") is None else f"{s['train_loss']:.4g}",
            "-" if s.get("val_loss") is None else f"{s['val_loss']:.4g}",
            "-" if eta is None else f"{eta:.0f}s",
            detail[:80],
        )
    return table


_VERSION_COLUMNS = (
    "symbol",
    "version",
    "status",
    "scope",
    "group",
    "bars",
    "rMAE",
    "s-naive",
    "MASE",
    "DM p",
    "origins",
    "cov80",
    "cov95",
    "dir acc",
    "vs naive",
    "cal80",
    "cal95",
    "best",
    "reason",
)


def coverage_cell(band: Any) -> str:
    """A ``BandCoverage`` as ``79.6/80``, red when it misses its target by more than 3
    points; ``-`` when there is none."""
    if band is None or band.coverage is None:
        return "-"
    return f"[red]{band.text}[/]" if band.miss else band.text


def versions_table(rows: Iterable[Any]) -> Table:
    """Model versions with their scope (``symbol``: own model, ``shared``: its group's
    model, the group named), their metrics against the naive baselines and, where stored
    (``quality``, a ``ModelQuality``), calibrated coverage against target and the baseline
    that beats NHITS on every score (``best``)."""
    rows = list(rows)
    longest = max((len(v.version) for v in rows), default=0)
    table = Table(title="model versions")
    for col in _VERSION_COLUMNS:
        # a version id is what the user copies into promote / --compare: never cut it
        is_version = col == "version"
        table.add_column(col, no_wrap=is_version, min_width=longest if is_version else None)
    for v in rows:
        m = v.metrics or {}
        q = getattr(v, "quality", None)  # versions evaluated before band scores have none
        model = m.get("model") or {}
        snaive = m.get("seasonal_naive") or {}
        verdict = m.get("verdict") or (
            None if m.get("beats_naive") is None else "no better than naive"
        )
        table.add_row(
            v.symbol,
            v.version,
            v.status,
            getattr(v, "scope", "symbol"),  # rows from before migration 102 have none
            getattr(v, "group", None) or "-",
            str(v.n_bars),
            fmt(model.get("rmae")),
            fmt(snaive.get("rmae")),
            fmt(model.get("mase")),
            fmt(m.get("dm_pvalue"), ".3g"),
            "-" if m.get("n_origins") is None else str(m["n_origins"]),
            fmt(model.get("coverage_80"), ".0%"),
            fmt(model.get("coverage_95"), ".0%"),
            fmt(model.get("directional_accuracy"), ".0%"),
            verdict or "-",
            coverage_cell(q and q.coverage_80),
            coverage_cell(q and q.coverage_95),
            (q and q.best) or "-",
            escape((v.reason or "")[:70]),
        )
    return table


def _cell(value: float | None, spec: str, won: bool) -> str:
    text = fmt(value, spec)
    return f"[bold green]{text} *[/]" if won and value is not None else text


#: (header, score, format) of the evaluation table's score columns after the coverages.
_EVAL_SCORES = (
    ("IS 80", "interval_score_80", "#.4g"),
    ("IS 95", "interval_score_95", "#.4g"),
    ("pinball", "pinball", "#.4g"),
    ("width 80", "width_80", "#.4g"),
    ("MAE", "mae", "#.4g"),
)
#: (header, key) of the skill columns: 1 - score / the empirical random walk's.
_SKILLS = (
    ("skill IS80", "interval_score_80"),
    ("skill IS95", "interval_score_95"),
    ("skill pinball", "pinball"),
)


def evaluation_table(ev: Any) -> Table:
    """Every method's scores on the same origins, the winner of each score marked ``*`` (a
    ``ModelEvaluationOut`` with ``probabilistic`` set)."""
    from kitrade.schemas import BandCoverage  # pydantic: not needed for --help

    report = ev.probabilistic
    table = Table(title=f"{ev.symbol} {ev.version}: every method on the same origins")
    table.add_column("method")
    for header in ("cov 80", "cov 95", *(h for h, _, _ in _EVAL_SCORES), *(h for h, _ in _SKILLS)):
        table.add_column(header, justify="right")
    for method, label in ev.labels.items():
        sc = report.methods.get(method)
        if sc is None:
            table.add_row(escape(label), *["-"] * (2 + len(_EVAL_SCORES) + len(_SKILLS)))
            continue
        won = {score for score, m in report.winners.items() if m == method}
        covs = []
        for score, target in (("coverage_80", 0.8), ("coverage_95", 0.95)):
            cell = coverage_cell(BandCoverage.of(getattr(sc, score), target))
            covs.append(f"[bold]{cell} *[/]" if score in won and cell != "-" else cell)
        table.add_row(
            escape(label),
            *covs,
            *(_cell(getattr(sc, key), spec, key in won) for _, key, spec in _EVAL_SCORES),
            *(fmt(sc.skill.get(key), "+.3f") for _, key in _SKILLS),
        )
    return table


def calibration_table(cal: Any) -> Table:
    """How the served bands are calibrated (a ``CalibrationSummary``): per level, the
    current miscoverage level and widening factor, averaged over the forecast steps."""

    def mean(xs: list[Any]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    table = Table(
        title=escape(f"calibration: {cal.method}"),
        caption=escape(
            f"gamma {cal.gamma:g}, window {cal.window}, {cal.updates} online updates, "
            f"through {cal.through or '-'}"
        ),
    )
    table.add_column("level")
    for col in ("target alpha", "mean alpha", "alpha range", "mean factor", "scores", "steps"):
        table.add_column(col, justify="right")
    for name, lv in cal.levels.items():
        table.add_row(
            f"{name} %",
            fmt(1 - lv.nominal, ".3f"),
            fmt(mean(lv.alpha), ".3f"),
            f"{fmt(min(lv.alpha, default=None))}-{fmt(max(lv.alpha, default=None))}",
            fmt(mean(lv.factor), "+.3f"),
            f"{min(lv.n_scores, default=0)}-{max(lv.n_scores, default=0)}",
            str(len(lv.alpha)),
        )
    return table


def evaluation_lines(ev: Any) -> None:
    """Print a version's evaluation: point verdict, the methods' table, what did not run,
    the calibration and the plain sentence (a ``ModelEvaluationOut``)."""
    p = ev.point
    out.print(
        escape(
            f"{ev.symbol} {ev.version} [{ev.status}]  point forecast: rMAE {fmt(p.rmae)}, "
            f"{p.verdict or '-'} (DM p {fmt(p.dm_pvalue, '.3g')}, {p.n_origins or '-'} origins)"
        ),
        highlight=False,
    )
    report = ev.probabilistic
    if report is not None:
        out.print(
            f"band scores on {report.origins} origins ({report.eval_start} to "
            f"{report.eval_end}, {report.points} points) after {report.calibration_origins} "
            "calibration origins; * best on that score (coverage: closest to its target, "
            "red: more than 3 points off; others: lowest)",
            highlight=False,
        )
        out.print(evaluation_table(ev))
        for method, why in report.baseline_errors.items():
            out.print(f"  {escape(ev.labels.get(method, method))} not run: {escape(why)}")
    out.print(calibration_table(ev.calibration) if ev.calibration else "calibration: -")
    out.print(ev.summary, highlight=False)


def documents_table(docs: Iterable[dict[str, Any]]) -> Table:
    """Knowledge documents."""
    table = Table("doc id", "title", "source", "date", "symbols", "chunks")
    for d in docs:
        table.add_row(
            d["doc_id"],
            d["title"][:40],
            d["source"][:40],
            d["date"] or "-",
            ",".join(d["symbols"]),
            str(d["chunks"]),
        )
    return table


def score_table(summary: Any, symbol: str | None) -> Table:
    """Scored answers next to always-hold and the forecast direction (a ``ScoreSummary``)."""
    table = Table(title=f"Scored answers{f' of {symbol}' if symbol else ''}")
    for col in ("strategy", "positions", "hit rate", "mean return", "total return"):
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2%}"

    for name, sc in (
        ("follow the advice", summary.advice),
        ("always hold", summary.always_hold),
        ("forecast direction", summary.forecast_direction),
    ):
        hit = "-" if sc.hit_rate is None else f"{sc.hit_rate:.0%}"
        table.add_row(name, str(sc.trades), hit, pct(sc.mean_return), pct(sc.total_return))
    return table


def answer_lines(a: Any) -> None:
    """Print an analysis answer: the call, the rationale, risks, sources, the notice."""
    colour = {"buy": "green", "sell": "red", "hold": "yellow"}[a.recommendation]
    out.print(
        f"[bold {colour}]{a.recommendation.upper()}[/] {a.symbol}  confidence "
        f"{a.confidence:.0%}  horizon {a.horizon}  backend {a.backend}"
        + (f" (fallback: {a.fallback_reason})" if a.fallback_reason else "")
    )
    out.print(a.rationale, highlight=False)
    for r in a.risks:
        out.print(f"  risk: {r}", highlight=False)
    for p in a.sources:
        out.print(f"  [{p.id}] {p.title}", highlight=False)
    out.print(f"[dim]{a.notice}[/]")


#: (label, key, format) of the metrics a backtest table shows, in order.
_BACKTEST_METRICS = (
    ("total return", "total_return", "+.2%"),
    ("CAGR", "cagr", "+.2%"),
    ("volatility (ann.)", "volatility", ".2%"),
    ("Sharpe", "sharpe", ".2f"),
    ("Sortino", "sortino", ".2f"),
    ("Calmar", "calmar", ".2f"),
    ("max drawdown", "max_drawdown", ".2%"),
    ("max drawdown (bars)", "max_drawdown_bars", "d"),
    ("win rate", "win_rate", ".1%"),
    ("profit factor", "profit_factor", ".2f"),
    ("expectancy", "expectancy", ",.2f"),
    ("exposure", "exposure", ".1%"),
    ("turnover", "turnover", ".2f"),
    ("fees paid", "fees_paid", ",.2f"),
    ("trades (closed)", "n_trades", "d"),
    ("fills", "n_fills", "d"),
    ("bars", "n_bars", "d"),
)


def backtest_metrics_table(metrics: dict[str, dict[str, Any]]) -> Table:
    """The strategy's metrics beside buy-and-hold and the naive signal (a result's ``metrics``).

    A ``None`` (NaN or infinity in the stored JSON, e.g. a profit factor without losses)
    prints as ``-``.
    """
    columns = [("strategy", "strategy"), ("buy & hold", "buy_and_hold"), ("naive", "naive")]
    table = Table(title="backtest metrics")
    table.add_column("metric")
    for label, _ in columns:
        table.add_column(label, justify="right")
    for label, key, spec in _BACKTEST_METRICS:
        table.add_row(
            label, *[fmt((metrics.get(name) or {}).get(key), spec) for _, name in columns]
        )
    return table


def forecast_quality_table(quality: dict[str, dict[str, Any]]) -> Table:
    """Forecast quality per scored step (a result's ``quality``), with the points behind each."""
    table = Table(title="forecast quality (decision bars, pooled over symbols)")
    for col in ("step", "hit rate", "n", "rMAE vs naive", "n", "cov 80", "cov 95", "n"):
        table.add_column(col, justify="left" if col == "step" else "right")
    table.add_column("DM stat", justify="right")
    table.add_column("DM p", justify="right")
    table.add_column("n", justify="right")
    for step, q in sorted(quality.items(), key=lambda kv: int(kv[0].split("_")[-1])):
        table.add_row(
            step.replace("step_", ""),
            fmt(q.get("hit_rate"), ".1%"),
            fmt(q.get("n_hit"), "d"),
            fmt(q.get("rmae"), ".3f"),
            fmt(q.get("n_mae"), "d"),
            fmt(q.get("coverage_80"), ".1%"),
            fmt(q.get("coverage_95"), ".1%"),
            fmt(q.get("n_coverage"), "d"),
            fmt(q.get("dm_stat"), "+.2f"),
            fmt(q.get("dm_pvalue"), ".3f"),
            fmt(q.get("n_dm"), "d"),
        )
    return table


def lag_test_table(lag: dict[str, Any]) -> Table:
    """The strategy on time and its weights one bar late (a result's ``lag_test``)."""
    table = Table(title="lag test: " + str(lag.get("description", "")))
    table.add_column("")
    table.add_column("on time", justify="right")
    table.add_column("one bar late", justify="right")
    table.add_row(
        "total return",
        fmt(lag.get("total_return"), "+.2%"),
        fmt(lag.get("total_return_lagged"), "+.2%"),
    )
    table.add_row("Sharpe", fmt(lag.get("sharpe"), ".2f"), fmt(lag.get("sharpe_lagged"), ".2f"))
    return table


def lookahead_table(checks: Iterable[dict[str, Any]]) -> Table:
    """The point-in-time checks of a backtest's forecasts (a result's ``lookahead_checks``)."""
    table = Table("check", "passed", "detail", title="look-ahead checks")
    for c in checks:
        table.add_row(
            c["name"], "[green]yes[/]" if c["passed"] else "[red]no[/]", escape(str(c["detail"]))
        )
    return table


def backtests_table(rows: Iterable[Any]) -> Table:
    """Stored backtests (``BacktestRecord``s), with the strategy's total return when done."""
    table = Table("id", "strategy", "symbols", "tf", "folds", "status", "progress", "return")
    table.add_column("B&H", justify="right")
    table.add_column("created")
    table.add_column("error")
    for r in rows:
        metrics = (r.result or {}).get("metrics") or {}
        table.add_row(
            str(r.id),
            r.strategy_name or f"({r.spec.get('kind')})",
            ",".join(r.symbols),
            r.timeframe,
            str(r.n_folds),
            f"[{_STATE_COLOURS.get(r.status, 'white')}]{r.status}[/]",
            f"{r.progress:.0%}",
            fmt((metrics.get("strategy") or {}).get("total_return"), "+.2%"),
            fmt((metrics.get("buy_and_hold") or {}).get("total_return"), "+.2%"),
            fmt_ts(r.created_at),
            escape((r.error or "")[:60]),
        )
    return table
