"""Backtests as use cases: record one, run it, list and read them.

``run_backtest`` loads the bars, cuts each symbol's period into walk-forward
folds, reuses the point-in-time forecasts already stored for a fold (same
configuration, same training bars) and computes the missing folds as
parallel Ray tasks, storing each as soon as it finishes. Then the core
package (``kitrade.backtest.strategies / engine / metrics / quality``) turns
bars and forecasts into trades, equity and metrics, and the result is stored.
A failed fold marks the backtest failed with the symbol and fold named and
stores no result; a rerun of a failed or interrupted backtest computes only
the folds not stored yet.

Strategies that read bars only (``forecasts.BARS_ONLY_KINDS``: buy and hold, SMA cross,
the naive direction) cut no folds, train no model and need no training history: their
period may start at the first stored bar.

Before a result is stored, the look-ahead checks of ``kitrade.backtest.lookahead`` run and
can fail it: a sample of ``LOOKAHEAD_FOLDS`` folds is recomputed as Ray tasks on bars
altered after a decision bar (their models trained again), and the strategy's weights are
recomputed on altered bars; neither may change up to that bar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kitrade.backtest import strategies
from kitrade.backtest.evaluate import execution_options
from kitrade.backtest.folds import Fold, decision_period, walk_forward_folds
from kitrade.backtest.forecasts import (
    FoldJob,
    empty_forecasts,
    needs_forecasts,
    point_in_time_checks,
)
from kitrade.backtest.strategies import STRATEGY_KINDS
from kitrade.data import backtests as store
from kitrade.errors import ConflictError, InvalidInputError, KitradeError

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database

__all__ = [
    "PreparedForecasts",
    "create_backtest",
    "get_backtest",
    "list_backtests",
    "prepare_forecasts",
    "run_backtest",
    "write_report",
]

_log = logging.getLogger(__name__)
#: The kind of a strategy stored before strategies had kinds: parameters only, not executable.
PARAMETER_ONLY = "parameters"
#: ``progress(fraction 0..1, message)``.
BacktestProgress = Callable[[float, str], None]
#: share of the progress bar the forecasts take; the engine and metrics take the rest.
_FORECAST_SHARE = 0.9
#: folds recomputed on altered later bars by the look-ahead check (each trains a model again).
LOOKAHEAD_FOLDS = 2
#: decision bars the weights check cuts at.
LOOKAHEAD_CUTS = 5
#: relative tolerance of the recomputed forecasts: on CPUs a fold recomputes bit for bit;
#: GPU training is not bit-reproducible (atomic adds in the backward pass), so with
#: ``NHITS_USE_GPU`` small differences are allowed, still far below what altering the later
#: bars by 20 % and more moves in a forecast that reads them.
LOOKAHEAD_RTOL = 1e-6
LOOKAHEAD_RTOL_GPU = 1e-3


def _check_request(
    no_strategy: bool,
    no_spec: bool,
    n_folds: int,
    start: datetime | None,
    end: datetime | None,
    costs: Any,
) -> None:
    """The checks of a backtest request that need no database (``create_backtest``)."""
    if no_strategy == no_spec:
        raise InvalidInputError("expected either a strategy name or an inline spec, not both")
    if n_folds < 1:
        raise InvalidInputError(f"n_folds: expected at least 1, was {n_folds}")
    if start is not None and end is not None and start > end:
        raise InvalidInputError(f"period: expected start <= end, was {start} > {end}")
    if costs is not None and not isinstance(costs, dict):
        raise InvalidInputError(f"costs: expected a JSON object, was {type(costs).__name__}")


def create_backtest(
    db: Database,
    *,
    strategy: str | None = None,
    spec: dict[str, Any] | None = None,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    n_folds: int = 4,
    costs: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> store.BacktestRecord:
    """Validate and record a queued backtest of a stored or an inline strategy.

    Args:
        db: the database.
        strategy: name of a stored strategy (its symbols, timeframe, kind and
            parameters); or
        spec: an inline strategy ``{"kind": ..., "params": {...}}`` with
            ``symbols`` and ``timeframe``.
        symbols: the symbols to trade (default: the stored strategy's).
        timeframe: the bars' timeframe (default: the stored strategy's).
        start: first decision bar (default: as early as the folds' training allows).
        end: last decision bar, inclusive (default: the last stored bar).
        n_folds: walk-forward folds per symbol.
        costs: execution costs for the engine (JSON object); recorded with each symbol's
            commission resolved (its asset class's default where none is given).
        model_overrides: NHITS configuration fields for the fold models.

    Raises:
        InvalidInputError: neither or both of ``strategy``/``spec``, a bad spec or period,
            a bad cost or per-symbol costs for symbols outside the backtest.
        NotFoundError: unknown strategy or symbol.
    """
    _check_request(strategy is None, spec is None, n_folds, start, end, costs)
    with db.connection() as conn:
        spec, symbols, timeframe = _resolve_spec(conn, strategy, spec, symbols, timeframe)
        _check_model(timeframe, model_overrides or {})  # refused even where unused
        costs = _resolve_costs(conn, symbols, costs)
        if needs_forecasts(spec["kind"]):
            _check_folds(conn, symbols, timeframe, n_folds, start, end, model_overrides or {})
        else:
            _check_period(conn, symbols, start, end)
        return store.create_backtest(
            conn,
            strategy_name=strategy,
            spec=spec,
            symbols=list(symbols),
            timeframe=timeframe,
            period_start=start,
            period_end=end,
            n_folds=n_folds,
            model_overrides=model_overrides,
            costs=costs,
        )


def _resolve_spec(
    conn: Any,
    strategy: str | None,
    spec: dict[str, Any] | None,
    symbols: list[str] | None,
    timeframe: str | None,
) -> tuple[dict[str, Any], list[str], str]:
    """The validated ``(spec, symbols, timeframe)`` of a stored or an inline strategy."""
    from kitrade.data.strategies import get_strategy
    from kitrade.data.symbols import get_symbol

    if strategy is not None:
        stored = get_strategy(conn, name=strategy)
        kind = store.strategy_kind(conn, name=strategy)
        spec = {"kind": kind, "params": stored.parameters}
        symbols = symbols or stored.symbols
        timeframe = timeframe or stored.timeframe
    if (
        spec is None
        or not isinstance(spec.get("kind"), str)
        or not isinstance(spec.get("params", {}), dict)
    ):
        raise InvalidInputError(
            f"spec: expected {{'kind': str, 'params': object}}, was {spec!r}"[:300]
        )
    if not symbols or timeframe is None:
        raise InvalidInputError("an inline spec needs symbols and a timeframe")
    other = {s: tf for s in symbols if (tf := get_symbol(conn, symbol=s).timeframe) != timeframe}
    if other:
        raise InvalidInputError(
            f"timeframe: the backtest trades {timeframe} bars, but "
            + ", ".join(f"{s} has {tf} bars" for s, tf in other.items())
            + "; backtest symbols of one timeframe together (one backtest per timeframe)"
        )
    if spec["kind"] == PARAMETER_ONLY:
        raise InvalidInputError(
            f"strategy {strategy!r} is parameter-only (kind {PARAMETER_ONLY!r}) and cannot "
            f"be backtested; give it one of the kinds: {', '.join(sorted(STRATEGY_KINDS))}"
        )
    strategies.parse_strategy(spec["kind"], spec.get("params", {}))
    return spec, list(symbols), timeframe


def _resolve_costs(conn: Any, symbols: list[str], costs: dict[str, Any] | None) -> dict[str, Any]:
    """The costs to record: checked, with each symbol's commission its asset class's default
    where none is given (recorded resolved, so a rerun keeps them if a class changes later).

    Raises:
        InvalidInputError: a bad cost, or per-symbol costs for symbols outside the backtest.
    """
    from kitrade.data.symbols import get_symbol

    classes = {s: get_symbol(conn, symbol=s).asset_class for s in symbols}
    model, _, _ = execution_options(costs, asset_classes=classes)
    return {**(costs or {}), "commission": model.commission}


def _check_model(timeframe: str, overrides: dict[str, Any]) -> None:
    """Refuse a timeframe or NHITS overrides the folds could not train with."""
    from pydantic import ValidationError

    from kitrade.backtest.folds import fold_config
    from kitrade.errors import describe_validation_errors

    try:
        fold_config(timeframe, **overrides)
    except ValidationError as exc:
        raise InvalidInputError(
            "model_overrides: " + describe_validation_errors(exc.errors())
        ) from None


def _check_folds(
    conn: Any,
    symbols: list[str],
    timeframe: str,
    n_folds: int,
    start: datetime | None,
    end: datetime | None,
    overrides: dict[str, Any],
) -> None:
    """Cut each symbol's stored bars into the folds now, so a period outside the bars or too
    short for the folds is refused before anything is recorded or run (the numbers named)."""
    from kitrade.data.bars import get_bars

    for s in symbols:
        bars = get_bars(conn, symbol=s).set_index("ts").sort_index()
        walk_forward_folds(
            bars, timeframe=timeframe, n_folds=n_folds, start=start, end=end, symbol=s, **overrides
        )


def _check_period(
    conn: Any, symbols: list[str], start: datetime | None, end: datetime | None
) -> None:
    """Refuse a period that holds none of a symbol's stored bars (a bars-only strategy)."""
    from kitrade.data.bars import get_bars

    for s in symbols:
        bars = get_bars(conn, symbol=s).set_index("ts").sort_index()
        decision_period(pd.DatetimeIndex(bars.index), start=start, end=end, symbol=s)


def get_backtest(db: Database, *, backtest_id: int) -> store.BacktestRecord:
    """One backtest (NotFoundError when unknown)."""
    with db.connection() as conn:
        return store.get_backtest(conn, backtest_id=backtest_id)


def list_backtests(
    db: Database, *, status: str | None = None, limit: int = 100
) -> list[store.BacktestRecord]:
    """The newest backtests first."""
    with db.connection() as conn:
        return store.list_backtests(conn, status=status, limit=limit)


@dataclass
class PreparedForecasts:
    """Bars, folds and point-in-time forecasts of a backtest, and what it cost.

    ``period`` is the first and last decision bar; ``jobs`` the (symbol, fold) units the
    forecasts came from (none for a bars-only strategy); ``asset_classes`` the symbols'.
    """

    bars: dict[str, pd.DataFrame]
    folds: dict[str, list[Fold]]
    forecasts: pd.DataFrame
    period: tuple[pd.Timestamp, pd.Timestamp]
    jobs: list[FoldJob] = field(default_factory=list)
    asset_classes: dict[str, str] = field(default_factory=dict)
    computed: list[tuple[str, int]] = field(default_factory=list)
    reused: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


def _asset_classes(db: Database, symbols: list[str]) -> dict[str, str]:
    from kitrade.data.symbols import get_symbol

    with db.connection() as conn:
        return {s: get_symbol(conn, symbol=s).asset_class for s in symbols}


def _bars_only(db: Database, record: store.BacktestRecord) -> PreparedForecasts:
    """Bars and decision period of a strategy that reads bars only: no folds, no forecasts."""
    bars = _load_bars(db, record.symbols, record.period_end)
    bounds = [
        decision_period(
            pd.DatetimeIndex(f.index), start=record.period_start, end=record.period_end, symbol=s
        )
        for s, f in bars.items()
    ]
    return PreparedForecasts(
        bars=bars,
        folds={},
        forecasts=empty_forecasts(),
        period=(min(b[0] for b in bounds), max(b[1] for b in bounds)),
        asset_classes=_asset_classes(db, record.symbols),
    )


def _load_bars(db: Database, symbols: list[str], end: datetime | None) -> dict[str, pd.DataFrame]:
    from kitrade.data.bars import get_bars

    out = {}
    with db.connection() as conn:
        for s in symbols:
            frame = get_bars(conn, symbol=s).set_index("ts").sort_index()
            if end is not None:
                frame = frame.loc[frame.index <= pd.Timestamp(end)]
            out[s] = frame
    return out


def _plan(
    record: store.BacktestRecord,
    bars: dict[str, pd.DataFrame],
    folds: dict[str, list[Fold]] | None,
) -> tuple[list[FoldJob], dict[str, list[Fold]]]:
    """One job per (symbol, fold); ``folds`` given by the caller replace the computed ones."""
    jobs, out = [], {}
    for s in record.symbols:
        config, made = walk_forward_folds(
            bars[s],
            timeframe=record.timeframe,
            n_folds=record.n_folds,
            start=record.period_start,
            end=record.period_end,
            symbol=s,
            **record.model_overrides,
        )
        out[s] = (folds or {}).get(s, made)
        jobs += [FoldJob(symbol=s, fold=f, config=config, bars=bars[s]) for f in out[s]]
    return jobs, out


def prepare_forecasts(
    settings: Settings,
    db: Database,
    record: store.BacktestRecord,
    *,
    progress: BacktestProgress | None = None,
    folds: dict[str, list[Fold]] | None = None,
) -> PreparedForecasts:
    """Bars, folds and forecasts of ``record``: stored folds reused, missing ones computed.

    Missing folds run as parallel Ray tasks on the connected cluster (a local
    one is started when none is); each is stored as soon as it finishes. A strategy that
    reads bars only gets its bars and period and nothing else (no fold, no model).

    Args:
        settings: configuration (Ray task resources).
        db: the database.
        record: the backtest.
        progress: called with ``(fraction, message)``; the forecasts fill 0..1.
        folds: per-symbol folds to use instead of the computed ones (callers
            that pick folds themselves: benchmarks, tests forcing a bad fold).

    Raises:
        FoldError: a fold failed (names the symbol and fold).
        InvalidInputError, TooShortError: the period cannot be cut into folds.
    """
    from kitrade.backtest.forecasts import compute_forecasts

    t0 = time.monotonic()
    if not needs_forecasts(str(record.spec.get("kind"))):
        return _bars_only(db, record)
    bars = _load_bars(db, record.symbols, record.period_end)
    jobs, fold_map = _plan(record, bars, folds)
    reused, missing = _split_stored(db, jobs)
    total = len(jobs)

    def report(done: int, _total: int, message: str) -> None:
        if progress is not None:
            progress((len(reused) + done) / total, message)

    def keep(job: FoldJob, frame: pd.DataFrame) -> None:
        with db.connection() as conn:
            store.store_forecasts(conn, fold_key=job.key, horizon=job.config.horizon, frame=frame)

    report(0, total, f"{len(reused)} of {total} folds stored, {len(missing)} to compute")
    if missing:
        from kitrade.cluster import connect

        connect()
        compute_forecasts(settings, missing, progress=report, on_fold=keep)
    return _with_folds(
        db,
        record,
        bars,
        fold_map,
        jobs,
        computed=[(j.symbol, j.fold.index) for j in missing],
        reused=[(j.symbol, j.fold.index) for j in reused],
        seconds=time.monotonic() - t0,
    )


def _with_folds(
    db: Database,
    record: store.BacktestRecord,
    bars: dict[str, pd.DataFrame],
    fold_map: dict[str, list[Fold]],
    jobs: list[FoldJob],
    **done: Any,
) -> PreparedForecasts:
    """The prepared forecasts of a strategy that reads them: the folds' stored forecasts,
    the period the folds span and the symbols' asset classes (``done``: what was computed)."""
    folds_all = [f for fs in fold_map.values() for f in fs]
    return PreparedForecasts(
        bars=bars,
        folds=fold_map,
        forecasts=_load_stored(db, jobs),
        period=(min(f.start for f in folds_all), max(f.end for f in folds_all)),
        jobs=jobs,
        asset_classes=_asset_classes(db, record.symbols),
        **done,
    )


def _split_stored(db: Database, jobs: list[FoldJob]) -> tuple[list[FoldJob], list[FoldJob]]:
    """``(reused, missing)``: the folds whose every decision bar is stored, and the rest."""
    missing: list[FoldJob] = []
    reused: list[FoldJob] = []
    with db.connection() as conn:
        for job in jobs:
            have = store.stored_decisions(
                conn,
                fold_key=job.key,
                symbol=job.symbol,
                start=job.fold.start,
                end=job.fold.end,
                horizon=job.config.horizon,
            )
            (reused if have == job.fold.n_decisions else missing).append(job)
    return reused, missing


def _load_stored(db: Database, jobs: list[FoldJob]) -> pd.DataFrame:
    """The stored forecasts of every job, in one frame."""
    with db.connection() as conn:
        frames = [
            store.load_forecasts(
                conn, fold_key=j.key, symbol=j.symbol, start=j.fold.start, end=j.fold.end
            )
            for j in jobs
        ]
    return pd.concat(frames, ignore_index=True)


def run_backtest(
    settings: Settings,
    db: Database,
    backtest_id: int,
    *,
    progress: BacktestProgress | None = None,
    folds: dict[str, list[Fold]] | None = None,
) -> store.BacktestRecord:
    """Run a recorded backtest to done or failed; returns its final record.

    Args:
        settings: configuration.
        db: the database.
        backtest_id: the backtest (queued, failed, interrupted or done: a rerun
            reuses the stored forecasts).
        progress: called with ``(fraction, message)``; the fraction is stored too.
        folds: see ``prepare_forecasts``.

    Raises:
        KitradeError: the backtest failed; it is marked failed with the same
            message (a failed fold names the symbol and fold) and has no result.
    """
    with db.connection() as conn:
        record = store.get_backtest(conn, backtest_id=backtest_id)
        store.mark_running(conn, backtest_id=backtest_id)
        end = _last_bar(conn, record)
        if end is not None:
            store.pin_period_end(conn, backtest_id=backtest_id, end=end)
            record = store.get_backtest(conn, backtest_id=backtest_id)

    def report(fraction: float, message: str) -> None:
        with db.connection() as conn:
            store.set_progress(conn, backtest_id=backtest_id, progress=fraction)
        if progress is not None:
            progress(fraction, message)

    try:
        prepared = prepare_forecasts(
            settings,
            db,
            record,
            progress=lambda f, m: report(f * _FORECAST_SHARE, m),
            folds=folds,
        )
        result = _evaluate(settings, record, prepared)
    except Exception as exc:
        message = exc.message if isinstance(exc, KitradeError) else f"{type(exc).__name__}: {exc}"
        with db.connection() as conn:
            store.mark_failed(conn, backtest_id=backtest_id, error=message)
        raise
    with db.connection() as conn:
        store.mark_done(conn, backtest_id=backtest_id, result=result)
        done = store.get_backtest(conn, backtest_id=backtest_id)
    if progress is not None:
        progress(1.0, "done")
    return done


def _last_bar(conn: Any, record: store.BacktestRecord) -> datetime | None:
    """The latest bar of the backtest's symbols when its period is open-ended, else None.

    Pinned on the first run so a rerun after new bars arrive cuts the same
    folds and reuses their stored forecasts.
    """
    from kitrade.data.bars import bar_stats

    if record.period_end is not None:
        return None
    lasts = [b.last_ts for s in record.symbols for b in bar_stats(conn, symbol=s) if b.last_ts]
    return max(lasts) if lasts else None


def _calibrated(record: store.BacktestRecord, forecasts: pd.DataFrame, bars: Any) -> pd.DataFrame:
    """The forecasts with their bands calibrated point in time, as served bands are
    (``backtest.calibration``), with the fold models' calibration settings."""
    from kitrade.backtest.calibration import calibrate_forecasts
    from kitrade.backtest.folds import fold_config

    config = fold_config(record.timeframe, **record.model_overrides)
    return calibrate_forecasts(
        forecasts, dict(bars), gamma=config.conformal_gamma, window=config.conformal_window
    )


def _evaluation(record: store.BacktestRecord, prepared: PreparedForecasts) -> Any:
    """The engine's runs over the record's decision bars (``kitrade.backtest.evaluate``), the
    strategy reading the calibrated bands."""
    from kitrade.backtest.evaluate import evaluate

    return evaluate(
        prepared.bars,
        _calibrated(record, prepared.forecasts, prepared.bars),
        record.spec,
        costs=record.costs,
        timeframe=record.timeframe,
        decision_start=prepared.period[0],
        decision_end=prepared.period[1],
        asset_classes=prepared.asset_classes,
    )


def lookahead_checks(
    settings: Settings, record: store.BacktestRecord, prepared: PreparedForecasts
) -> list[dict[str, Any]]:
    """The checks of a backtest that can fail (``kitrade.backtest.lookahead``).

    The forecast checks run when the strategy reads forecasts: every decision bar has its
    forecast, and ``LOOKAHEAD_FOLDS`` folds recomputed as Ray tasks on bars altered after a
    decision bar give the stored forecasts up to it. The weights check runs for every kind.
    """
    from kitrade.backtest.evaluate import execution_options
    from kitrade.backtest.forecasts import compute_forecasts
    from kitrade.backtest.lookahead import forecast_check, weights_check

    checks: list[dict[str, Any]] = []
    if prepared.jobs:
        from kitrade.cluster import connect

        connect()
        checks += point_in_time_checks(prepared.forecasts, prepared.folds)
        checks.append(
            forecast_check(
                prepared.forecasts,
                prepared.jobs,
                lambda jobs: compute_forecasts(settings, jobs),
                sample=LOOKAHEAD_FOLDS,
                seed=record.id,
                rtol=LOOKAHEAD_RTOL_GPU if settings.nhits_use_gpu else LOOKAHEAD_RTOL,
            )
        )
    params = strategies.parse_strategy(str(record.spec["kind"]), record.spec.get("params") or {})
    costs = execution_options(record.costs)[0]
    checks.append(
        weights_check(
            lambda bars, fc: strategies.target_weights(
                params, dict(bars), _calibrated(record, fc, bars), costs=costs
            ),
            prepared.bars,
            prepared.forecasts,
            start=prepared.period[0],
            end=prepared.period[1],
            sample=LOOKAHEAD_CUTS,
            seed=record.id,
        )
    )
    return checks


def _evaluate(
    settings: Settings, record: store.BacktestRecord, prepared: PreparedForecasts
) -> dict[str, Any]:
    """The stored result: metrics beside the baselines, curves, trades, folds and checks.

    Raises:
        KitradeError: a look-ahead check failed (nothing is stored).
    """
    checks = lookahead_checks(settings, record, prepared)
    failed = [c["name"] for c in checks if not c["passed"]]
    if failed:
        details = "; ".join(c["detail"] for c in checks if not c["passed"])
        raise KitradeError(f"look-ahead checks failed: {failed} ({details}); no result stored")
    answer: dict[str, Any] = _evaluation(record, prepared).answer
    answer["lookahead_checks"] = checks
    answer["folds"] = [{"symbol": s, **f.to_json()} for s, fs in prepared.folds.items() for f in fs]
    answer["forecast_folds"] = {"computed": len(prepared.computed), "reused": len(prepared.reused)}
    return answer


def write_report(settings: Settings, db: Database, *, backtest_id: int, path: str | Path) -> Path:
    """Write the HTML report of a finished backtest to ``path``.

    The runs are rebuilt from the stored forecasts, so the report shows every bar and fill,
    not the thinned curves of the stored result. It never trains a model: when a fold's
    forecasts are no longer stored it refuses, naming the folds and the command that
    computes them. Beside the figures it states the costs, bars per year, the period, the
    strategy and the fold models' configuration, and scores the forecasts at every step.

    Raises:
        ConflictError: the backtest has not finished, or some folds' forecasts are missing.
    """
    from kitrade.backtest.report import write_report as write_html

    record = get_backtest(db, backtest_id=backtest_id)
    if record.status != "done" or record.result is None:
        raise ConflictError(
            f"backtest {backtest_id}: expected a finished backtest, was {record.status}"
        )
    prepared = _stored_forecasts(db, record)
    evaluation = _evaluation(record, prepared)
    result = record.result
    strategy = evaluation.strategy
    first = strategy.equity.index[0]
    period = {s: f.loc[f.index >= first] for s, f in prepared.bars.items()}
    return write_html(
        path,
        strategy,
        bars=period,
        metrics=result["metrics"],
        benchmark=evaluation.benchmark.equity,
        quality=_quality_by_step(
            _calibrated(record, prepared.forecasts, prepared.bars), period, strategy.equity.index
        ),
        folds=result.get("folds", []),
        checks=_report_checks(result),
        costs={
            **result.get("costs", {}),
            "fees paid (strategy)": strategy.fees_paid,
            "financing and borrow paid (strategy)": strategy.carry_paid,
        },
        settings=_report_settings(record, result, strategy.equity.index),
        title=f"kitrade backtest {backtest_id}: {record.strategy_name or record.spec['kind']}",
    )


def _stored_forecasts(db: Database, record: store.BacktestRecord) -> PreparedForecasts:
    """Bars, folds and the stored forecasts of ``record``; nothing is computed.

    Raises:
        ConflictError: some folds' forecasts are not stored (they are named, with the
            command that computes them).
    """
    if not needs_forecasts(str(record.spec.get("kind"))):
        return _bars_only(db, record)
    bars = _load_bars(db, record.symbols, record.period_end)
    jobs, fold_map = _plan(record, bars, None)
    _, missing = _split_stored(db, jobs)
    if missing:
        named = ", ".join(f"{j.symbol} fold {j.fold.index}" for j in missing)
        raise ConflictError(
            f"backtest {record.id}: the forecasts of {named} are not stored (deleted, or "
            "stored under another model configuration); the report never trains models. "
            f"Compute them with `python scripts/backtest.py {record.id}` (on a cluster: "
            f"`ray job submit --working-dir . -- python scripts/backtest.py {record.id}`), "
            "which reruns the backtest and computes only the missing folds, then write the "
            "report again"
        )
    return _with_folds(db, record, bars, fold_map, jobs)


def _quality_by_step(
    forecasts: pd.DataFrame, bars: dict[str, pd.DataFrame], decision_bars: pd.Index
) -> dict[str, dict[str, float]]:
    """Forecast quality at every forecast step over the decision bars (``step_h`` keys)."""
    from kitrade.backtest.quality import forecast_quality

    if forecasts.empty:
        return {}
    return {
        f"step_{h}": forecast_quality(forecasts, bars, step=h, decision_bars=decision_bars)
        for h in range(1, int(forecasts["step"].max()) + 1)
    }


def _report_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored look-ahead checks, then the lag test as a row of its own."""
    lag = result.get("lag_test", {})
    return [
        *result.get("lookahead_checks", []),
        {  # a diagnostic beside the checks, never a pass
            "name": "lag_test (diagnostic)",
            "passed": "n/a",
            "detail": f"total return {lag.get('total_return')} on time, "
            f"{lag.get('total_return_lagged')} one bar late. {lag.get('meaning', '')}",
        },
    ]


def _report_settings(
    record: store.BacktestRecord, result: dict[str, Any], index: pd.Index
) -> dict[str, Any]:
    """What the report's figures rest on besides the costs: period, annualisation, strategy
    and the fold models' NHITS configuration (the timeframe defaults plus the overrides)."""
    import json

    from kitrade.backtest.folds import fold_config

    metrics = (result.get("metrics") or {}).get("strategy") or {}
    config = fold_config(record.timeframe, **record.model_overrides).model_dump(mode="json")
    return {
        "symbols": ", ".join(record.symbols),
        "timeframe": record.timeframe,
        "decision bars": f"{index[0].isoformat()} .. {index[-1].isoformat()} ({len(index)})",
        "walk-forward folds per symbol": record.n_folds,
        "bars per year (annualisation)": metrics.get("bars_per_year", "not in this result"),
        "strategy": json.dumps(record.spec, sort_keys=True),
        "model overrides": json.dumps(record.model_overrides, sort_keys=True),
        **{f"model: {k}": v for k, v in config.items()},
    }
