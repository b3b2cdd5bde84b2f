"""Data deployment: symbols, strategies, bars, sync, model versions and progress over PostgreSQL.

A thin adapter: each method validates its input with the shared schemas,
calls one use case of ``kitrade.services`` with the replica's pooled
database, and returns plain data through the error envelope.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from kitrade.config import load_settings
from kitrade.data.db import Database
from kitrade.deployments.common import AppArgs, envelope
from kitrade.schemas import (
    BacktestDetail,
    BacktestRequest,
    BacktestSummary,
    StrategySpec,
    StrategyUpdate,
    SymbolIn,
    SymbolUpdate,
)
from kitrade.services import backtests, catalog, jobs, quality, training
from kitrade.services import sync as sync_service

__all__ = ["DataDeployment"]


class DataDeployment:
    """The store behind the gateway."""

    def __init__(self, args: AppArgs) -> None:
        os.environ.update(args.env)  # the replica's settings come from the app's args
        self._settings = load_settings()
        self._db = Database.from_settings(self._settings)

    # --------------------------------------------------------------- symbols
    @envelope
    def list_symbols(self, active_only: bool = False) -> Any:
        return catalog.list_symbols(self._db, active_only=active_only)

    @envelope
    def get_symbol(self, symbol: str) -> Any:
        return catalog.get_symbol(self._db, symbol=symbol)

    @envelope
    def create_symbol(self, spec: dict[str, Any]) -> Any:
        return catalog.create_symbol(self._db, spec=SymbolIn(**spec))

    @envelope
    def update_symbol(self, symbol: str, changes: dict[str, Any]) -> Any:
        return catalog.update_symbol(self._db, symbol=symbol, changes=SymbolUpdate(**changes))

    @envelope
    def delete_symbol(self, symbol: str, delete_bars: bool = False) -> Any:
        n = catalog.delete_symbol(self._db, symbol=symbol, delete_bars=delete_bars)
        return {"symbol": symbol, "bars_deleted": n}

    # ------------------------------------------------------------ strategies
    @envelope
    def list_strategies(self, symbol: str | None = None) -> Any:
        return catalog.list_strategies(self._db, symbol=symbol)

    @envelope
    def get_strategy(self, name: str) -> Any:
        return catalog.get_strategy(self._db, name=name)

    @envelope
    def create_strategy(self, spec: dict[str, Any]) -> Any:
        return catalog.create_strategy(self._db, spec=StrategySpec(**spec))

    @envelope
    def update_strategy(self, name: str, changes: dict[str, Any]) -> Any:
        return catalog.update_strategy(self._db, name=name, changes=StrategyUpdate(**changes))

    @envelope
    def delete_strategy(self, name: str) -> Any:
        catalog.delete_strategy(self._db, name=name)
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
        frame = catalog.bars(
            self._db, symbol=symbol, last=last, start=start, end=end, timeframe=timeframe
        )
        frame = frame.assign(ts=frame["ts"].map(lambda t: t.isoformat()))
        return frame.to_dict("records")

    # ------------------------------------------------------------------ sync
    @envelope
    def sync(self, symbols: list[str] | None, source: str | None) -> Any:
        # The replica runs inside the cluster: notes go straight to the knowledge actor.
        outcome = sync_service.run_sync(self._settings, self._db, symbols=symbols, source=source)
        return outcome.report

    @envelope
    def sync_status(self) -> Any:
        return sync_service.sync_status(self._db)

    # ---------------------------------------------------------------- models
    @envelope
    def versions(self, symbol: str | None) -> Any:
        return quality.versions(self._db, symbols=None if symbol is None else [symbol])

    @envelope
    def evaluation(self, symbol: str, version: str | None) -> Any:
        return quality.evaluation(self._db, symbol=symbol, version=version)

    @envelope
    def promote(self, symbol: str, version: str) -> Any:
        return training.promote(self._db, symbol=symbol, version=version)

    @envelope
    def rollback(self, symbol: str, to_version: str | None) -> Any:
        return training.rollback(self._db, symbol=symbol, to_version=to_version)

    @envelope
    def progress(self, run_id: str | None) -> Any:
        return training.progress(self._db, run_id=run_id)

    # ------------------------------------------------------------- backtests
    @envelope
    def create_backtest(self, request: dict[str, Any]) -> Any:
        """Validate and record a backtest, then start it on the cluster (``jobs``)."""
        body = BacktestRequest(**request)
        record = backtests.create_backtest(self._db, **body.service_args())
        jobs.start_backtest(self._settings, record.id)  # the row holds its progress and result
        return {
            "id": record.id,
            "status": record.status,
            "links": {"self": f"/api/v1/backtests/{record.id}"},
        }

    @envelope
    def list_backtests(self, status: str | None, limit: int) -> Any:
        records = backtests.list_backtests(self._db, status=status, limit=limit)
        return [BacktestSummary.from_record(r) for r in records]

    @envelope
    def get_backtest(self, backtest_id: int) -> Any:
        return BacktestDetail.from_record(backtests.get_backtest(self._db, backtest_id=backtest_id))

    @envelope
    def ping(self) -> Any:
        return {"bars_storage": catalog.bars_storage(self._db)}
