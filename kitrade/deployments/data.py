"""Data deployment: symbols, strategies, bars, sync, model versions and progress over PostgreSQL.

Each method validates its input with the shared schemas, calls one function
of the data or training layer with a pooled connection, and returns plain
data through the error envelope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kitrade.deployments.common import AppArgs, envelope

__all__ = ["DataDeployment"]


class DataDeployment:
    """The store behind the gateway."""

    def __init__(self, args: AppArgs) -> None:
        import os

        os.environ.update(args.env)
        from kitrade.config import load_settings
        from kitrade.data.db import Database

        self._settings = load_settings()
        self._db = Database.from_settings(self._settings)

    # --------------------------------------------------------------- symbols
    @envelope
    def list_symbols(self, active_only: bool = False) -> Any:
        from kitrade.data.symbols import list_symbols

        with self._db.connection() as conn:
            return list_symbols(conn, active_only=active_only)

    @envelope
    def get_symbol(self, symbol: str) -> Any:
        from kitrade.data.symbols import get_symbol

        with self._db.connection() as conn:
            return get_symbol(conn, symbol=symbol)

    @envelope
    def create_symbol(self, spec: dict[str, Any]) -> Any:
        from kitrade.data.symbols import create_symbol
        from kitrade.schemas import SymbolIn

        with self._db.connection() as conn:
            return create_symbol(conn, spec=SymbolIn(**spec))

    @envelope
    def update_symbol(self, symbol: str, changes: dict[str, Any]) -> Any:
        from kitrade.data.symbols import update_symbol
        from kitrade.schemas import SymbolUpdate

        with self._db.connection() as conn:
            return update_symbol(conn, symbol=symbol, changes=SymbolUpdate(**changes))

    @envelope
    def delete_symbol(self, symbol: str, delete_bars: bool = False) -> Any:
        from kitrade.data.symbols import delete_symbol

        with self._db.connection() as conn:
            return {
                "symbol": symbol,
                "bars_deleted": delete_symbol(conn, symbol=symbol, delete_bars=delete_bars),
            }

    # ------------------------------------------------------------ strategies
    @envelope
    def list_strategies(self, symbol: str | None = None) -> Any:
        from kitrade.data.strategies import list_strategies

        with self._db.connection() as conn:
            return list_strategies(conn, symbol=symbol)

    @envelope
    def get_strategy(self, name: str) -> Any:
        from kitrade.data.strategies import get_strategy

        with self._db.connection() as conn:
            return get_strategy(conn, name=name)

    @envelope
    def create_strategy(self, spec: dict[str, Any]) -> Any:
        from kitrade.data.strategies import create_strategy
        from kitrade.schemas import StrategySpec

        with self._db.connection() as conn:
            return create_strategy(conn, spec=StrategySpec(**spec))

    @envelope
    def update_strategy(self, name: str, changes: dict[str, Any]) -> Any:
        from kitrade.data.strategies import update_strategy
        from kitrade.schemas import StrategyUpdate

        with self._db.connection() as conn:
            return update_strategy(conn, name=name, changes=StrategyUpdate(**changes))

    @envelope
    def delete_strategy(self, name: str) -> Any:
        from kitrade.data.strategies import delete_strategy

        with self._db.connection() as conn:
            delete_strategy(conn, name=name)
        return {"deleted": name}

    # ------------------------------------------------------------------ bars
    @envelope
    def bars(
        self,
        symbol: str,
        last: int | None,
        start: datetime | None,
        end: datetime | None,
        timeframe: str | None,
    ) -> Any:
        from kitrade.data.bars import get_bars, latest_bars, resample_bars
        from kitrade.data.symbols import get_symbol

        with self._db.connection() as conn:
            get_symbol(conn, symbol=symbol)
            if timeframe:
                frame = resample_bars(
                    conn, symbol=symbol, timeframe=timeframe, start=start, end=end
                )
                if last:
                    frame = frame.tail(last)
            elif start is None and end is None:
                frame = latest_bars(conn, symbol=symbol, n=last or 500)
            else:
                frame = get_bars(conn, symbol=symbol, start=start, end=end, limit=last)
        frame = frame.assign(ts=frame["ts"].map(lambda t: t.isoformat()))
        return frame.to_dict("records")

    # ------------------------------------------------------------------ sync
    @envelope
    def sync(self, symbols: list[str] | None, source: str | None) -> Any:
        from kitrade.data.sources import build_source
        from kitrade.data.sync import sync_symbols

        src = build_source(self._settings, source)
        try:
            report = sync_symbols(self._db, src, symbols)
        finally:
            src.close()
        fresh = [r.symbol for r in report.results if r.new_bars]
        if fresh:
            after_new_bars(self._settings, self._db, fresh)
        return report

    @envelope
    def sync_status(self) -> Any:
        from kitrade.data.sync_state import list_sync_states

        with self._db.connection() as conn:
            return list_sync_states(conn)

    # ---------------------------------------------------------------- models
    @envelope
    def versions(self, symbol: str | None) -> Any:
        from kitrade.training.registry import list_versions

        with self._db.connection() as conn:
            return list_versions(conn, symbol=symbol)

    @envelope
    def promote(self, symbol: str, version: str) -> Any:
        from kitrade.training.registry import promote

        with self._db.connection() as conn:
            return promote(conn, symbol=symbol, version=version)

    @envelope
    def rollback(self, symbol: str, to_version: str | None) -> Any:
        from kitrade.training.registry import rollback

        with self._db.connection() as conn:
            return rollback(conn, symbol=symbol, to_version=to_version)

    @envelope
    def progress(self, run_id: str | None) -> Any:
        from kitrade.data.progress import load_run

        with self._db.connection() as conn:
            return load_run(conn, run_id=run_id)

    @envelope
    def ping(self) -> Any:
        from kitrade.data.migrations import get_meta

        with self._db.connection() as conn:
            return {"bars_storage": get_meta(conn, "bars_storage")}


def after_new_bars(settings: Any, db: Any, symbols: list[str]) -> None:
    """Refresh the market notes and score past answers whose horizon new bars reached.

    Both are follow-ups: a failure is logged and the sync that brought the bars stands.
    """
    import logging

    from kitrade.analysis.actors import publish_notes
    from kitrade.analysis.scoring import score_answers

    log = logging.getLogger(__name__)
    try:
        publish_notes(settings, db, symbols)
    except Exception as exc:  # noqa: BLE001 - notes are a bonus; the sync itself succeeded
        log.warning("market notes not refreshed: %s", exc)
    for symbol in symbols:
        try:
            score_answers(db, symbol=symbol)
        except Exception as exc:  # noqa: BLE001 - scoring is retried after the next sync
            log.warning("answers of %s not scored: %s", symbol, exc)
