"""Analysis use cases: the analyst (built once, here), answers, history and scoring.

The CLI and the analysis deployment both get their analyst from
``build_analyst``: retrieval through the knowledge actor, the LLM backend
from settings, forecasts from whatever the caller has (the forecast
deployment, or models loaded in-process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pydantic

from kitrade.analysis.schemas import AnalysisAnswer, AnalyzeRequest, Passage
from kitrade.analysis.scoring import ScoreSummary, score_answers, score_summary
from kitrade.analysis.service import Analyst
from kitrade.errors import InvalidInputError, describe_validation_errors
from kitrade.services import catalog
from kitrade.services import knowledge as kb_service
from kitrade.services.forecasting import ForecastFn

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database

__all__ = [
    "BackendFactory",
    "analyze",
    "build_analyst",
    "history",
    "score",
    "stream",
    "validated_request",
]

#: settings -> an LLM backend (None: the offline analyst)
BackendFactory = Callable[["Settings"], Any]


def _backend_from_settings(settings: Settings) -> Any:
    from kitrade.analysis.llm import backend_from_settings

    return backend_from_settings(settings)


def build_analyst(
    settings: Settings,
    db: Database,
    *,
    kb: Any,
    forecast: ForecastFn,
    backend_factory: BackendFactory | None = None,
) -> Analyst:
    """The analyst every entry point uses.

    Args:
        settings: configuration (the LLM backend comes from it).
        db: the store (bars, versions, the answers' audit trail).
        kb: the knowledge actor's handle (retrieval).
        forecast: symbol -> forecast dict, from the caller's forecaster.
        backend_factory: builds the LLM backend from settings (tests inject one).
    """

    def search(query: str, symbol: str, k: int, as_of: str | None) -> list[Passage]:
        hits = kb_service.search(kb, query=query, k=k, symbol=symbol, as_of=as_of)
        return [Passage(**h) for h in hits]

    backend = (backend_factory or _backend_from_settings)(settings)
    return Analyst(db, search=search, forecast=forecast, backend=backend)


def validated_request(symbol: str, question: str, as_of: str | datetime | None) -> AnalyzeRequest:
    """An analyze request checked like the API's body; ``InvalidInputError`` otherwise."""
    try:
        return AnalyzeRequest(symbol=symbol, question=question, as_of=as_of)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors())) from None


def analyze(
    analyst: Analyst, *, symbol: str, question: str, as_of: datetime | None = None
) -> AnalysisAnswer:
    """A grounded, audited answer (stored with everything that produced it)."""
    return analyst.analyze(symbol, question, as_of)


def stream(
    analyst: Analyst, *, symbol: str, question: str, as_of: datetime | None = None
) -> Iterator[tuple[str, Any]]:
    """The answer as ``(event, data)`` pairs (see ``Analyst.stream``)."""
    return analyst.stream(symbol, question, as_of)


def history(
    analyst: Analyst, *, symbol: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Stored answers, newest first."""
    return analyst.history(symbol, limit)


def score(db: Database, *, symbol: str | None = None, run: bool = True) -> ScoreSummary:
    """Score answers whose horizon has passed (when ``run``), then summarize them.

    Args:
        db: the store.
        symbol: only this symbol (``NotFoundError`` when unknown).
        run: score newly due answers first.
    """
    if symbol is not None:
        catalog.get_symbol(db, symbol=symbol)
    n = score_answers(db, symbol=symbol) if run else 0
    return score_summary(db, symbol=symbol).model_copy(update={"newly_scored": n})
