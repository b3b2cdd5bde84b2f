"""Analysis deployment: grounded trading answers and the knowledge routes.

A thin adapter over ``kitrade.services.analysis`` and
``kitrade.services.knowledge``: the analyst is built by the service from
settings, with retrieval through the knowledge actor (the store's single
owner) and forecasts through the forecast deployment's handle;
``backend_factory`` lets a caller inject another LLM backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from kitrade.config import load_settings
from kitrade.data.db import Database
from kitrade.deployments.common import AppArgs, envelope, unwrap
from kitrade.errors import KitradeError
from kitrade.services import analysis as analysis_service
from kitrade.services import knowledge as kb_service
from kitrade.services.analysis import BackendFactory

# actor_call/actor_await moved to kitrade.services.knowledge; re-exported for the gateway.
from kitrade.services.knowledge import actor_await, actor_call

__all__ = ["AnalysisDeployment", "actor_await", "actor_call"]


class AnalysisDeployment:
    """``analyze``, ``history`` and knowledge base operations."""

    def __init__(
        self, forecast: Any, args: AppArgs, backend_factory: BackendFactory | None = None
    ) -> None:
        os.environ.update(args.env)  # the replica's settings come from the app's args
        self._settings = load_settings()
        self._db = Database.from_settings(self._settings)
        self._kb = kb_service.knowledge_actor(self._settings, connected=True)
        self._forecast = forecast
        self._analyst = analysis_service.build_analyst(
            self._settings,
            self._db,
            kb=self._kb,
            forecast=self._forecast_of,
            backend_factory=backend_factory,
        )

    def _forecast_of(self, symbol: str) -> dict[str, Any] | None:
        """The forecast deployment's answer for ``symbol`` (its error raised again)."""
        answer = self._forecast.forecast.remote(symbol, None).result(timeout_s=30)
        return unwrap(answer)

    @envelope
    def analyze(self, symbol: str, question: str, as_of: datetime | None = None) -> Any:
        """A grounded, audited answer."""
        return analysis_service.analyze(
            self._analyst, symbol=symbol, question=question, as_of=as_of
        )

    def analyze_stream(
        self, symbol: str, question: str, as_of: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """``{"event", "data"}`` dicts (see ``Analyst.stream``); a first ``error`` event on failure.

        Called through a streaming handle (``options(stream=True)``).
        """
        try:
            for event, data in analysis_service.stream(
                self._analyst, symbol=symbol, question=question, as_of=as_of
            ):
                yield {"event": event, "data": data}
        except KitradeError as exc:
            yield {
                "event": "error",
                "data": {
                    "error": type(exc).__name__,
                    "message": exc.message,
                    "status": exc.http_status,
                },
            }

    @envelope
    def score(self, symbol: str | None, run: bool) -> Any:
        """Score answers whose horizon has passed (when ``run``), then summarize."""
        return analysis_service.score(self._db, symbol=symbol, run=run)

    @envelope
    def history(self, symbol: str | None, limit: int) -> Any:
        """Stored answers."""
        return analysis_service.history(self._analyst, symbol=symbol, limit=limit)

    @envelope
    def kb_add(
        self,
        text: str,
        source: str,
        title: str | None,
        symbols: list[str] | None,
        date_: str | None,
    ) -> Any:
        """Add a knowledge document."""
        return kb_service.add_text(
            self._kb, text=text, source=source, title=title, symbols=symbols, date_=date_
        )

    @envelope
    def kb_add_url(
        self, url: str, title: str | None, symbols: list[str] | None, date_: str | None
    ) -> Any:
        """Fetch a public URL (see ``kitrade.analysis.fetch``) and add it."""
        return kb_service.add_url(
            self._settings, self._kb, url=url, title=title, symbols=symbols, date_=date_
        )

    @envelope
    def kb_list(self) -> Any:
        """Knowledge documents."""
        return kb_service.list_documents(self._kb)

    @envelope
    def kb_delete(self, doc_id: str) -> Any:
        """Delete a knowledge document."""
        return {"doc_id": doc_id, "chunks_deleted": kb_service.remove(self._kb, doc_id=doc_id)}

    @envelope
    def kb_search(self, q: str, k: int, symbol: str | None, as_of: str | None) -> Any:
        """Search the knowledge base."""
        return kb_service.search(self._kb, query=q, k=k, symbol=symbol, as_of=as_of)

    @envelope
    def ping(self) -> Any:
        """Health: the knowledge store answers."""
        return {"chunks": kb_service.count(self._kb, timeout_s=10)}
