"""The ``kitrade`` command line.

Heavy libraries (pandas, psycopg, ray, torch) are imported inside commands so
``kitrade --help`` stays fast. kitrade errors become a one-line message on
stderr and the error class's exit code (see ``kitrade.errors``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kitrade.errors import InvalidInputError, KitradeError

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database

__all__ = ["app", "main"]

app = typer.Typer(
    name="kitrade",
    help="kitrade: market bars, NHITS forecasters and grounded trading analysis on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    help="The database (embedded PostgreSQL unless TIMESCALE_HOST is set).", no_args_is_help=True
)
symbols_app = typer.Typer(help="Symbols: list, add, remove.", no_args_is_help=True)
strategies_app = typer.Typer(help="Strategies: list, add, remove.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(symbols_app, name="symbols")
app.add_typer(strategies_app, name="strategies")
kb_app = typer.Typer(help="Knowledge base: add, list, search, remove.", no_args_is_help=True)


app.add_typer(kb_app, name="kb")

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    from kitrade.config import load_settings

    return load_settings()


def _store(settings: Settings) -> Database:
    from kitrade.data.store import open_store

    return open_store(settings, start=True)


def _fmt_ts(ts: object) -> str:
    if ts is None:
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ db
@db_app.command("up")
def db_up() -> None:
    """Start the embedded database (if configured) and apply migrations."""
    settings = _settings()
    from kitrade.data.db import start_database

    started = start_database(settings)
    _store(settings).close()
    if settings.embedded_db:
        state = "started" if started else "already running"
        out.print(
            f"embedded PostgreSQL {state} on 127.0.0.1:{settings.embedded_pg_port} "
            f"(data in {settings.pg_dir})"
        )
    else:
        out.print(f"using PostgreSQL at {settings.timescale_host}:{settings.timescale_port}")


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded database (an external one is never touched)."""
    settings = _settings()
    from kitrade.data.db import stop_database

    if not settings.embedded_db:
        out.print("TIMESCALE_HOST is set: the database is external, nothing to stop")
        return
    out.print(
        "embedded PostgreSQL stopped"
        if stop_database(settings)
        else "embedded PostgreSQL was not running"
    )


@db_app.command("status")
def db_status() -> None:
    """Show where the database is and whether it answers."""
    _print_store_status(_settings())


def _print_store_status(settings: Settings) -> bool:
    from kitrade.data.store import store_status

    st = store_status(settings)
    table = Table(title="database", show_header=False)
    table.add_row("mode", st.mode)
    table.add_row("where", st.where)
    table.add_row("running", "yes" if st.running else f"no ({st.error})")
    if st.running:
        table.add_row("server", st.server_version or "-")
        table.add_row("bars storage", st.bars_storage or "(not migrated)")
        table.add_row("migrations", ", ".join(map(str, st.migrations)) or "none")
        table.add_row("symbols / bars", f"{st.symbols} / {st.bars}")
    out.print(table)
    return st.running


# ------------------------------------------------------------------------- symbols
@symbols_app.command("list")
def symbols_list() -> None:
    """List symbols with their bars and sync status."""
    settings = _settings()
    from kitrade.data.symbols import list_symbols
    from kitrade.data.sync_state import list_sync_states

    with _store(settings) as db, db.connection() as conn:
        syms = list_symbols(conn)
        states = {s.symbol: s for s in list_sync_states(conn)}
    table = Table("symbol", "tf", "class", "active", "bars", "first", "last", "close", "sync")
    for s in syms:
        st = states.get(s.symbol)
        table.add_row(
            s.symbol,
            s.timeframe,
            s.asset_class,
            "yes" if s.active else "no",
            str(s.bars),
            _fmt_ts(s.first_bar),
            _fmt_ts(s.last_bar),
            "-" if s.last_close is None else f"{s.last_close:.6g}",
            (st.status + (f": {st.error}" if st.error else "")) if st else "never",
        )
    out.print(table)


@symbols_app.command("add")
def symbols_add(
    symbol: str,
    timeframe: Annotated[str, typer.Option(help="M1 M5 M15 M30 H1 H4 D1 W1 MN1")] = "H1",
    asset_class: Annotated[
        str, typer.Option(help="fx stock crypto index commodity other")
    ] = "other",
    description: str = "",
) -> None:
    """Add a symbol."""
    settings = _settings()
    from kitrade.data.symbols import create_symbol

    spec = _validated(
        "SymbolIn",
        symbol=symbol,
        timeframe=timeframe,
        asset_class=asset_class,
        description=description,
        source="manual",
    )
    with _store(settings) as db, db.connection() as conn:
        s = create_symbol(conn, spec=spec)
    out.print(f"added {s.symbol} ({s.timeframe}, {s.asset_class})")


@symbols_app.command("rm")
def symbols_rm(
    symbol: str,
    delete_bars: Annotated[
        bool, typer.Option("--delete-bars", help="Also delete its bars.")
    ] = False,
) -> None:
    """Remove a symbol (refused while it has bars, unless --delete-bars)."""
    settings = _settings()
    from kitrade.data.symbols import delete_symbol

    with _store(settings) as db, db.connection() as conn:
        n = delete_symbol(conn, symbol=symbol, delete_bars=delete_bars)
    out.print(f"removed {symbol}" + (f" and its {n} bars" if n else ""))


def _validated(model: str, **fields: object) -> object:
    import pydantic

    from kitrade import schemas
    from kitrade.errors import InvalidInputError, describe_validation_errors

    try:
        return getattr(schemas, model)(**fields)
    except pydantic.ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors(), show_input=True)) from None


# ---------------------------------------------------------------------- strategies
@strategies_app.command("list")
def strategies_list() -> None:
    """List strategies."""
    settings = _settings()
    from kitrade.data.strategies import list_strategies

    with _store(settings) as db, db.connection() as conn:
        rows = list_strategies(conn)
    table = Table("name", "symbols", "tf", "parameters")
    for s in rows:
        table.add_row(s.name, ",".join(s.symbols), s.timeframe, str(s.parameters))
    out.print(table)


@strategies_app.command("add")
def strategies_add(
    spec_file: Annotated[Path, typer.Argument(help="JSON strategy spec file")],
) -> None:
    """Add a strategy from a JSON spec (name, symbols, timeframe, parameters)."""
    import json

    from kitrade.errors import InvalidInputError

    settings = _settings()
    from kitrade.data.strategies import create_strategy

    try:
        payload = json.loads(spec_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{spec_file}: expected a JSON strategy spec, {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"{spec_file}: expected a JSON object, was {type(payload).__name__}"
        )
    spec = _validated("StrategySpec", **payload)
    with _store(settings) as db, db.connection() as conn:
        s = create_strategy(conn, spec=spec)
    out.print(f"added strategy {s.name} on {', '.join(s.symbols)}")


@strategies_app.command("rm")
def strategies_rm(name: str) -> None:
    """Remove a strategy."""
    settings = _settings()
    from kitrade.data.strategies import delete_strategy

    with _store(settings) as db, db.connection() as conn:
        delete_strategy(conn, name=name)
    out.print(f"removed strategy {name}")


# -------------------------------------------------------------------------- sync
@app.command("sync")
def sync_cmd(
    symbols: Annotated[
        list[str] | None, typer.Argument(help="Symbols (default: all active)")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="sample, files or http (default: configured)")
    ] = None,
) -> None:
    """Fetch new bars for symbols from the market-data source."""
    settings = _settings()
    with _store(settings) as db:
        report = _run_sync(settings, db, symbols or None, source)
    if not report.ok:
        raise typer.Exit(code=5)


def _run_sync(
    settings: Settings, db: Database, symbols: list[str] | None, source_name: str | None
) -> object:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from kitrade.data.sources import build_source
    from kitrade.data.sync import sync_symbols

    source = build_source(settings, source_name)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed} bars"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"syncing from {source.name}", total=None)

            def progress(symbol: str, rows: int) -> None:
                bar.update(task, advance=rows, description=f"syncing {symbol} from {source.name}")

            report = sync_symbols(db, source, symbols, progress=progress)
    finally:
        source.close()
    table = Table("symbol", "status", "new bars", "first", "last", "error")
    for r in report.results:
        colour = {"ok": "green", "up_to_date": "dim", "failed": "red"}[r.status]
        table.add_row(
            r.symbol,
            f"[{colour}]{r.status}[/]",
            str(r.new_bars),
            _fmt_ts(r.first_ts),
            _fmt_ts(r.last_ts),
            r.error or "",
        )
    out.print(table)
    return report


# -------------------------------------------------------------------------- bars
@app.command("bars")
def bars_cmd(
    symbol: str,
    last: Annotated[
        int, typer.Option("--last", "-n", min=1, max=100_000, help="How many bars")
    ] = 10,
    timeframe: Annotated[str | None, typer.Option(help="Resample to a coarser timeframe")] = None,
) -> None:
    """Print a symbol's latest bars."""
    settings = _settings()
    from kitrade.data.bars import latest_bars, resample_bars
    from kitrade.data.symbols import get_symbol

    with _store(settings) as db, db.connection() as conn:
        get_symbol(conn, symbol=symbol)
        if timeframe:
            frame = resample_bars(conn, symbol=symbol, timeframe=timeframe).tail(last)
        else:
            frame = latest_bars(conn, symbol=symbol, n=last)
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
    out.print(table)


# ------------------------------------------------------------------------ training
def _progress_table(run: dict) -> Table:
    from rich.markup import escape

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
    colours = {
        "done": "green",
        "failed": "red",
        "skipped": "dim",
        "running": "cyan",
        "queued": "yellow",
    }
    for s in run.get("symbols", []):
        eta = s.get("eta_s")
        detail = s.get("error") or s.get("detail") or ""
        table.add_row(
            s["symbol"],
            f"[{colours.get(s['state'], 'white')}]{s['state']}[/]",
            str(s["attempt"]),
            f"{s['step']}/{s['max_steps']}",
            f"{s.get('percent', 0):.0f}",
            "-" if s.get("train_loss") is None else f"{s['train_loss']:.4g}",
            "-" if s.get("val_loss") is None else f"{s['val_loss']:.4g}",
            "-" if eta is None else f"{eta:.0f}s",
            detail[:80],
        )
    return table


def _load_progress(settings: Settings, run_id: str | None = None) -> dict:
    from kitrade.data.progress import load_run

    with _store(settings) as db, db.connection() as conn:
        return load_run(conn, run_id=run_id).model_dump(mode="json")


@app.command("train")
def train_cmd(
    symbols: Annotated[
        list[str] | None, typer.Argument(help="Symbols (default: all active)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even fresh models")] = False,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override NHITS max steps")] = None,
) -> None:
    """Train NHITS models on Ray with live progress; gate and register each version."""
    settings = _settings()
    from kitrade.cluster import connect

    _store(settings).close()
    connect()
    overrides = {"max_steps": max_steps} if max_steps else None
    report = _train_live(settings, symbols or None, force=force, overrides=overrides)
    if report.status != "done":
        raise typer.Exit(code=6)


def _train_live(
    settings: Settings, symbols: list[str] | None, *, force: bool, overrides: dict | None
) -> Any:
    from rich.live import Live

    from kitrade.training.tasks import new_run_id, train_all

    run_id = new_run_id()
    with Live(Table(), console=out, refresh_per_second=2, transient=False) as live:
        last = {"t": 0.0}

        def redraw() -> None:
            if time.monotonic() - last["t"] < 0.5:
                return
            last["t"] = time.monotonic()
            live.update(_progress_table(_load_progress(settings, run_id)))

        report = train_all(
            settings, symbols, force=force, overrides=overrides, run_id=run_id, on_update=redraw
        )
        last["t"] = 0.0
        redraw()
    _print_versions(settings, [r.symbol for r in report.results])
    out.print(f"run {report.run_id}: {report.status} in {report.seconds:.0f}s")
    return report


@app.command("progress")
def progress_cmd(
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest)")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print once instead of following")] = False,
) -> None:
    """Show training progress (a live table until the run ends)."""
    settings = _settings()
    snap = _load_progress(settings, run)
    if snap.get("run_id") is None:
        out.print("no training run yet")
        return
    if once or snap.get("finished_at"):
        out.print(_progress_table(snap))
        return
    from rich.live import Live

    with Live(_progress_table(snap), console=out, refresh_per_second=2) as live:
        while not snap.get("finished_at"):
            time.sleep(1.0)
            snap = _load_progress(settings, snap["run_id"])
            live.update(_progress_table(snap))


def _fmt(v: object, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _print_versions(settings: Settings, symbols: list[str] | None) -> None:
    from kitrade.training.registry import list_versions

    with _store(settings) as db, db.connection() as conn:
        if symbols:
            rows = [v for s in symbols for v in list_versions(conn, symbol=s, limit=20)]
        else:
            rows = list_versions(conn, limit=500)
    table = Table(
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
        title="model versions",
    )
    for v in rows:
        m = v.metrics or {}
        model, naive, snaive = (
            m.get("model") or {},
            m.get("naive") or {},
            m.get("seasonal_naive") or {},
        )
        beats = m.get("beats_naive")
        table.add_row(
            v.symbol,
            v.version,
            v.status,
            str(v.n_bars),
            _fmt(model.get("mase")),
            _fmt(naive.get("mase")),
            _fmt(snaive.get("mase")),
            _fmt(model.get("coverage_80"), ".0%"),
            _fmt(model.get("coverage_95"), ".0%"),
            _fmt(model.get("directional_accuracy"), ".0%"),
            "-" if beats is None else ("yes" if beats else "no"),
            (v.reason or "")[:70],
        )
    out.print(table)


@app.command("models")
def models_cmd(symbol: Annotated[str | None, typer.Argument()] = None) -> None:
    """List model versions with their metrics against the naive baselines."""
    settings = _settings()
    if symbol is not None:
        from kitrade.schemas import validate_symbol

        validate_symbol(symbol)
    _print_versions(settings, [symbol] if symbol else None)


@app.command("promote")
def promote_cmd(symbol: str, version: str) -> None:
    """Make VERSION the active model of SYMBOL (overrides the gate)."""
    settings = _settings()
    from kitrade.training.registry import promote

    with _store(settings) as db, db.connection() as conn:
        v = promote(conn, symbol=symbol, version=version)
    out.print(f"{symbol}: {v.version} is active")


@app.command("rollback")
def rollback_cmd(
    symbol: str,
    to: Annotated[
        str | None, typer.Option("--to", help="Version (default: the previous one)")
    ] = None,
) -> None:
    """Re-activate the previously active version of SYMBOL (or --to VERSION)."""
    settings = _settings()
    from kitrade.training.registry import rollback

    with _store(settings) as db, db.connection() as conn:
        v = rollback(conn, symbol=symbol, to_version=to)
    out.print(f"{symbol}: rolled back to {v.version}")


# ----------------------------------------------------------------- knowledge/analysis
def _knowledge(settings: Settings) -> Any:
    """The knowledge actor on the running platform's cluster, or on a private local one."""
    from kitrade.analysis.actors import get_knowledge_actor
    from kitrade.cluster import connect

    connect(address="auto" if _cluster_running() else None)
    return get_knowledge_actor(settings)


def _cluster_running() -> bool:
    import subprocess

    from kitrade.platform import _ray_bin

    if os.environ.get("RAY_ADDRESS"):
        return True
    return subprocess.run([_ray_bin(), "status"], capture_output=True, timeout=60).returncode == 0


@kb_app.command("add")
def kb_add(
    files: Annotated[list[Path], typer.Argument(help="Text or Markdown files")],
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbols it is about")
    ] = None,
    date: Annotated[str | None, typer.Option(help="Date of the document (YYYY-MM-DD)")] = None,
) -> None:
    """Add documents (chunked, embedded) to the knowledge base."""
    from kitrade.deployments.analysis import actor_call
    from kitrade.errors import InvalidInputError

    settings = _settings()
    for f in files:
        if f.suffix.lower() not in (".md", ".txt", ".markdown"):
            raise InvalidInputError(f"{f}: expected a .md or .txt file")
        if not f.is_file():
            raise InvalidInputError(f"{f}: no such file")
    actor = _knowledge(settings)
    for f in files:
        res = actor_call(actor.add_document.remote(f.read_text(), str(f.name), None, symbol, date))
        out.print(f"added {f} as {res['doc_id']} ({res['chunks']} chunks)")


@kb_app.command("list")
def kb_list() -> None:
    """List knowledge documents."""
    from kitrade.deployments.analysis import actor_call

    docs = actor_call(_knowledge(_settings()).list_documents.remote())
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
    out.print(table)


@kb_app.command("search")
def kb_search(text: str, k: Annotated[int, typer.Option(min=1, max=50)] = 5) -> None:
    """Search the knowledge base."""
    from kitrade.deployments.analysis import actor_call

    hits = actor_call(_knowledge(_settings()).search.remote(text, k, None, None))
    for h in hits:
        out.print(f"[bold]{h['id']}[/] ({h['score']:.3f}) {h['title']}")
        out.print("  " + h["text"][:300].replace("\n", " "), highlight=False)


@kb_app.command("rm")
def kb_rm(doc_id: str) -> None:
    """Remove a knowledge document."""
    from kitrade.deployments.analysis import actor_call

    n = actor_call(_knowledge(_settings()).delete_document.remote(doc_id))
    out.print(f"removed {doc_id} ({n} chunks)")


@app.command("analyze")
def analyze_cmd(
    symbol: Annotated[str, typer.Argument(help="Symbol to ask about, or `score`")],
    question: Annotated[str | None, typer.Argument(help="The question")] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Answer with only what was known at this ISO date/time"),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--symbol", help="With `score`: only this symbol")
    ] = None,
) -> None:
    """Ask a trading question about SYMBOL (LLM if configured, else the offline analyst).

    `kitrade analyze score` scores past answers whose horizon has passed against what the
    price then did, next to always-hold and the forecast-direction signal.
    """
    settings = _settings()
    if symbol == "score" and question is None:
        _score_cmd(settings, only)
        return
    if question is None:
        raise InvalidInputError("question: expected a question after the symbol")
    from kitrade.analysis.llm import backend_from_settings
    from kitrade.analysis.schemas import AnalyzeRequest, Passage
    from kitrade.analysis.service import Analyst
    from kitrade.deployments.analysis import actor_call
    from kitrade.training.engine import ForecastEngine

    req = _validated_model(AnalyzeRequest, symbol=symbol, question=question, as_of=as_of)
    actor = _knowledge(settings)
    db = _store(settings)
    engine = ForecastEngine(db)
    engine.refresh()

    def search(q: str, sym: str, k: int, day: str | None) -> list[Passage]:
        return [Passage(**h) for h in actor_call(actor.search.remote(q, k, sym, day))]

    analyst = Analyst(
        db,
        search=search,
        forecast=lambda s: engine.forecast(s).model_dump(mode="json"),
        backend=backend_from_settings(settings),
    )
    a = analyst.analyze(req.symbol, req.question, req.as_of)
    db.close()
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


def _score_cmd(settings: Any, symbol: str | None) -> None:
    from kitrade.analysis.scoring import score_answers, score_summary

    db = _store(settings)
    try:
        if symbol is not None:
            from kitrade.data.symbols import get_symbol

            with db.connection() as conn:
                get_symbol(conn, symbol=symbol)
        n = score_answers(db, symbol=symbol)
        summary = score_summary(db, symbol=symbol)
    finally:
        db.close()
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
    out.print(table)
    out.print(f"newly scored {n}, scored {summary.scored}, pending {summary.pending}")
    out.print(summary.verdict, highlight=False)


def _validated_model(cls: type, **fields: object) -> Any:
    import pydantic

    from kitrade.errors import InvalidInputError, describe_validation_errors

    try:
        return cls(**fields)
    except pydantic.ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors())) from None


# ------------------------------------------------------------------ backup/restore
@app.command("backup")
def backup_cmd(file: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz)")]) -> None:
    """Write one archive with a database dump, the models dir and the RAG dir."""
    settings = _settings()
    from kitrade.backup import backup

    _store(settings).close()
    manifest = backup(settings, file)
    out.print(
        f"backup written to {file} ({file.stat().st_size / 1e6:.1f} MB, {manifest['created_at']})"
    )


@app.command("restore")
def restore_cmd(
    file: Annotated[Path, typer.Argument(help="Archive from `kitrade backup`")],
) -> None:
    """Restore an archive into a fresh data dir / empty database."""
    settings = _settings()
    from kitrade.backup import restore

    manifest = restore(settings, file)
    out.print(f"restored backup of {manifest['created_at']} into {settings.data_dir}")


# ------------------------------------------------------------------------- status
@app.command("status")
def status_cmd() -> None:
    """Show the platform's configuration and the database's state."""
    settings = _settings()
    out.print(f"data dir      {settings.data_dir}")
    out.print(f"source        {settings.resolved_source}")
    out.print(f"HTTP          {settings.host}:{settings.port}")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        err.print(
            f"[yellow]warning:[/] the API listens on {settings.host} beyond localhost and "
            "KITRADE_API_KEY is unset"
        )
    running = _print_store_status(settings)
    if not running:
        raise typer.Exit(code=69)


# ----------------------------------------------------------------------- up/down
@app.command("up")
def up_cmd(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and return")] = False,
    train: Annotated[bool, typer.Option(help="Train symbols that have no fresh model")] = True,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Cap NHITS steps")] = None,
) -> None:
    """Start the platform: database, sample data, Ray, missing models, the HTTP API."""
    settings = _settings()
    state = {"ray": False}
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        _up(settings, detach=detach, train=train, max_steps=max_steps, state=state)
        if detach:
            out.print("running in the background; stop with `kitrade down`")
            return
        out.print("kitrade is up. Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except BaseException:
        err.print("start-up failed: stopping what was started")
        _shutdown(settings, stop_cluster=state["ray"])
        raise
    out.print("shutting down…")
    _shutdown(settings, stop_cluster=state["ray"])
    out.print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _up(
    settings: Settings, *, detach: bool, train: bool, max_steps: int | None, state: dict
) -> None:
    from kitrade.cluster import connect
    from kitrade.platform import DASHBOARD_PORT, deploy, start_ray

    db = _store(settings)
    try:
        with db.connection() as conn:
            n = conn.execute("SELECT count(*) FROM bars").fetchone()[0]
        if n == 0:
            out.print(
                f"store is empty: loading market data from the {settings.resolved_source} source"
            )
            _run_sync(settings, db, None, None)
    finally:
        db.close()
    _print_store_status(settings)
    out.print("starting Ray…")
    state["ray"] = start_ray(settings, state=state)
    connect(address="auto" if not os.environ.get("RAY_ADDRESS") else None)
    if train:
        _train_live(
            settings, None, force=False, overrides={"max_steps": max_steps} if max_steps else None
        )
    out.print("deploying the HTTP API…")
    deploy(settings)
    from kitrade.training.retrain import get_retrain_scheduler

    get_retrain_scheduler(settings).start.remote()
    try:
        from kitrade.analysis.actors import publish_notes
        from kitrade.data.db import Database

        with Database.from_settings(settings) as notes_db:
            publish_notes(settings, notes_db)
    except Exception as exc:  # noqa: BLE001 - notes are a bonus; the platform is up without them
        err.print(f"market notes not written: {exc}")
    base = f"http://{settings.host}:{settings.port}"
    out.print(f"API        {base}/api/v1/symbols")
    out.print(f"docs       {base}/docs")
    out.print(f"dashboard  {base}/")
    out.print(f"health     {base}/health")
    out.print(f"Ray        http://127.0.0.1:{DASHBOARD_PORT}")
    if settings.api_key is None:
        out.print("[yellow]KITRADE_API_KEY is unset: state-changing routes answer 403[/]")


def _shutdown(settings: Settings, *, stop_cluster: bool) -> None:
    from kitrade.data.db import stop_database
    from kitrade.platform import stop_ray, undeploy

    try:
        undeploy()
    except Exception as exc:  # noqa: BLE001 - Serve may already be gone; go on stopping
        err.print(f"serve shutdown: {exc}")
    if stop_cluster:
        stop_ray()
    stop_database(settings)


@app.command("down")
def down_cmd() -> None:
    """Stop what `kitrade up --detach` started: Serve, the local Ray cluster, the database."""
    settings = _settings()
    from kitrade.data.db import stop_database
    from kitrade.platform import stop_ray

    if not os.environ.get("RAY_ADDRESS"):
        stop_ray()
        out.print("Ray stopped")
    out.print(
        "embedded PostgreSQL stopped" if stop_database(settings) else "database: nothing to stop"
    )


# -------------------------------------------------------------------------- main
def _run(fn: Callable[[], object]) -> int:
    import click

    try:
        rv = fn()
    except KitradeError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(_run(lambda: app(standalone_mode=False)))


if __name__ == "__main__":
    main()
