"""Analysis deployment: grounded trading answers and the knowledge routes.

A shim over ``kitrade.analysis.service.Analyst``: retrieval goes through the
knowledge actor (the store's single owner), forecasts through the forecast
deployment, the LLM backend comes from settings (``backend_factory`` lets a
caller inject another).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from kitrade.deployments.common import AppArgs, envelope, unwrap

__all__ = ["AnalysisDeployment", "actor_call"]

_log = logging.getLogger(__name__)


def _actor_error(exc: BaseException, timeout_s: float) -> Exception:
    """The ``KitradeError`` to raise for a failed knowledge-actor call."""
    import ray

    from kitrade.errors import KitradeError, UpstreamError

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, KitradeError):
            return type(cause)(cause.message)
        return UpstreamError(f"knowledge store failed: {type(cause or exc).__name__}")
    if isinstance(exc, TimeoutError):  # ray's GetTimeoutError is one too
        return UpstreamError(f"knowledge store did not answer within {timeout_s:g}s")
    return UpstreamError("knowledge store is restarting; try again")


def actor_call(ref: Any, timeout_s: float = 60.0) -> Any:
    """``ray.get`` that re-raises a ``KitradeError`` raised inside the actor as itself."""
    import ray

    try:
        return ray.get(ref, timeout=timeout_s)
    except (ray.exceptions.RayTaskError, TimeoutError, ray.exceptions.RayActorError) as exc:
        raise _actor_error(exc, timeout_s) from None


async def actor_await(ref: Any, timeout_s: float = 60.0) -> Any:
    """``await ref`` with the error mapping of ``actor_call`` (for async callers)."""
    import asyncio

    import ray

    try:
        return await asyncio.wait_for(ref, timeout_s)
    except (ray.exceptions.RayTaskError, TimeoutError, ray.exceptions.RayActorError) as exc:
        raise _actor_error(exc, timeout_s) from None


class AnalysisDeployment:
    """``analyze``, ``history`` and knowledge base operations."""

    def __init__(self, forecast: Any, args: AppArgs, backend_factory: Any = None) -> None:
        import os

        os.environ.update(args.env)
        from kitrade.analysis.actors import get_knowledge_actor
        from kitrade.analysis.schemas import Passage
        from kitrade.analysis.service import Analyst
        from kitrade.config import load_settings
        from kitrade.data.db import Database

        settings = load_settings()
        self._settings = settings
        self._db = Database.from_settings(settings)
        self._kb = get_knowledge_actor(settings)
        self._forecast = forecast
        if backend_factory is None:
            from kitrade.analysis.llm import backend_from_settings as backend_factory
        backend = backend_factory(settings)

        def search(query: str, symbol: str, k: int, as_of: str | None) -> list[Passage]:
            hits = actor_call(self._kb.search.remote(query, k, symbol, as_of))
            return [Passage(**h) for h in hits]

        def forecast_fn(symbol: str) -> dict[str, Any] | None:
            answer = self._forecast.forecast.remote(symbol, None).result(timeout_s=30)
            return unwrap(answer)

        self._analyst = Analyst(self._db, search=search, forecast=forecast_fn, backend=backend)

    @envelope
    def analyze(self, symbol: str, question: str, as_of: datetime | None = None) -> Any:
        """A grounded, audited answer."""
        return self._analyst.analyze(symbol, question, as_of)

    def analyze_stream(
        self, symbol: str, question: str, as_of: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """``{"event", "data"}`` dicts (see ``Analyst.stream``); a first ``error`` event on failure.

        Called through a streaming handle (``options(stream=True)``).
        """
        from kitrade.errors import KitradeError

        try:
            for event, data in self._analyst.stream(symbol, question, as_of):
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
        from kitrade.analysis.scoring import score_answers, score_summary

        if symbol is not None:
            self._analyst.require_symbol(symbol)
        n = score_answers(self._db, symbol=symbol) if run else 0
        return score_summary(self._db, symbol=symbol).model_copy(update={"newly_scored": n})

    @envelope
    def history(self, symbol: str | None, limit: int) -> Any:
        """Stored answers."""
        return self._analyst.history(symbol, limit)

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
        return actor_call(self._kb.add_document.remote(text, source, title, symbols, date_))

    @envelope
    def kb_add_url(
        self, url: str, title: str | None, symbols: list[str] | None, date_: str | None
    ) -> Any:
        """Fetch a public URL (see ``kitrade.analysis.fetch``) and add it."""
        from kitrade.analysis.fetch import fetch_document

        allow = frozenset(a.strip() for a in self._settings.fetch_allow.split(",") if a.strip())
        doc = fetch_document(url, allow=allow)
        if not doc.text.strip():
            from kitrade.errors import InvalidInputError

            raise InvalidInputError(f"url: {url} has no text")
        return actor_call(
            self._kb.add_document.remote(doc.text, doc.url, title or doc.title, symbols, date_)
        )

    @envelope
    def kb_list(self) -> Any:
        """Knowledge documents."""
        return actor_call(self._kb.list_documents.remote())

    @envelope
    def kb_delete(self, doc_id: str) -> Any:
        """Delete a knowledge document."""
        return {
            "doc_id": doc_id,
            "chunks_deleted": actor_call(self._kb.delete_document.remote(doc_id)),
        }

    @envelope
    def kb_search(self, q: str, k: int, symbol: str | None, as_of: str | None) -> Any:
        """Search the knowledge base."""
        return actor_call(self._kb.search.remote(q, k, symbol, as_of))

    @envelope
    def ping(self) -> Any:
        """Health: the knowledge store answers."""
        return {"chunks": actor_call(self._kb.count.remote(), timeout_s=10)}
