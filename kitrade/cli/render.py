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
    "bars_table",
    "documents_table",
    "err",
    "fmt",
    "fmt_ts",
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
    "bars",
    "MASE",
    "naive",
    "s-naive",
    "cov80",
    "cov95",
    "dir acc",
    "beats naive",
    "reason",
)


def versions_table(rows: Iterable[Any]) -> Table:
    """Model versions with their metrics against the naive baselines."""
    table = Table(*_VERSION_COLUMNS, title="model versions")
    for v in rows:
        m = v.metrics or {}
        model, naive = m.get("model") or {}, m.get("naive") or {}
        snaive = m.get("seasonal_naive") or {}
        beats = m.get("beats_naive")
        table.add_row(
            v.symbol,
            v.version,
            v.status,
            str(v.n_bars),
            fmt(model.get("mase")),
            fmt(naive.get("mase")),
            fmt(snaive.get("mase")),
            fmt(model.get("coverage_80"), ".0%"),
            fmt(model.get("coverage_95"), ".0%"),
            fmt(model.get("directional_accuracy"), ".0%"),
            "-" if beats is None else ("yes" if beats else "no"),
            (v.reason or "")[:70],
        )
    return table


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
