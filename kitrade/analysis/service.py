"""The analyst: grounded context, an LLM backend or the offline analyst, an audit trail.

``Analyst.analyze`` assembles the context for a question about a symbol (a
summary of the latest bars, indicators, the active forecast with its
intervals and the model's evaluation against naive, the top-k retrieved
passages), asks the configured LLM backend for a JSON answer and validates
it, falls back to the offline analyst (saying why) when the LLM is invalid,
late or unreachable, and stores the answer with everything that produced it.
Retrieval and forecasts come in as callables so the deployment can route
them through the knowledge actor and the forecast deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kitrade.analysis.models import AnalysisAnswer, AnalysisContext, Passage
from kitrade.errors import ConflictError, KitradeError, NotFoundError, UpstreamError
from kitrade.schemas import validate_symbol

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["Analyst"]

_log = logging.getLogger(__name__)
Search = Callable[[str, str, int], list[Passage]]  # (query, symbol, k)
ForecastFn = Callable[[str], dict[str, Any] | None]  # symbol -> forecast dict or None


class Analyst:
    """Answers trading questions about a symbol, grounded and audited."""

    def __init__(
        self, db: Database, *, search: Search, forecast: ForecastFn, backend: Any = None, k: int = 5
    ) -> None:
        self._db = db
        self._search = search
        self._forecast = forecast
        self._backend = backend
        self._k = k

    def context(self, symbol: str, question: str) -> AnalysisContext:
        """Everything the analyst may use, as data."""
        from kitrade.analysis.indicators import compute_indicators, summarize_bars
        from kitrade.data.bars import latest_bars
        from kitrade.data.symbols import get_symbol
        from kitrade.training.registry import active_version

        validate_symbol(symbol)
        with self._db.connection() as conn:
            sym = get_symbol(conn, symbol=symbol)
            bars = latest_bars(conn, symbol=symbol, n=300) if sym.bars else None
            active = active_version(conn, symbol=symbol)
        if bars is None or bars.empty:
            raise ConflictError(f"{symbol} has no bars yet; sync it first (POST /api/v1/sync)")
        forecast = None
        try:
            forecast = self._forecast(symbol) if active is not None else None
        except KitradeError as exc:
            _log.warning("no forecast for %s: %s", symbol, exc.message)
        try:
            passages = self._search(f"{symbol}: {question}", symbol, self._k)
        except KitradeError as exc:
            _log.warning("knowledge search failed: %s", exc.message)
            passages = []
        evaluation = None
        if active is not None:
            m = active.metrics or {}
            evaluation = {
                k: m.get(k)
                for k in ("model", "naive", "seasonal_naive", "beats_naive", "windows", "points")
            }
        return AnalysisContext(
            symbol=symbol,
            question=question,
            timeframe=sym.timeframe,
            last_bar=bars["ts"].iloc[-1].to_pydatetime(),
            last_close=float(bars["close"].iloc[-1]),
            bars_summary=summarize_bars(bars, sym.timeframe),
            indicators=compute_indicators(bars),
            forecast=forecast,
            evaluation=evaluation,
            passages=passages,
        )

    def analyze(self, symbol: str, question: str) -> AnalysisAnswer:
        """Answer, falling back to the offline analyst when the LLM fails; stored for audit."""
        from kitrade.analysis.offline import offline_answer

        question = question.strip()
        ctx = self.context(symbol, question)
        answer: AnalysisAnswer
        if self._backend is None:
            answer = offline_answer(ctx)
        else:
            try:
                llm = self._backend.answer(ctx)
                answer = AnalysisAnswer(
                    **llm.model_dump(),
                    symbol=symbol,
                    question=question,
                    backend=self._backend.name,
                    model=self._backend.model,
                    forecast_version=(ctx.forecast or {}).get("version"),
                    last_bar=ctx.last_bar,
                    sources=[p for p in ctx.passages if p.id in set(llm.cited_source_ids)]
                    or ctx.passages,
                    indicators=ctx.indicators,
                )
            except UpstreamError as exc:
                answer = offline_answer(ctx, fallback_reason=f"{self._backend.name}: {exc.message}")
        return self._store(ctx, answer)

    def _store(self, ctx: AnalysisContext, answer: AnalysisAnswer) -> AnalysisAnswer:
        from psycopg.types.json import Jsonb

        horizon = (ctx.forecast or {}).get("horizon")
        with self._db.connection() as conn:
            row = conn.execute(
                "INSERT INTO analysis_answers (symbol, question, backend, model, fallback_reason,"
                " forecast_version, last_bar, last_close, horizon_bars, passage_ids, indicators,"
                " recommendation, confidence, answer) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s) RETURNING id, created_at",
                (
                    ctx.symbol,
                    ctx.question,
                    answer.backend,
                    answer.model,
                    answer.fallback_reason,
                    answer.forecast_version,
                    ctx.last_bar,
                    ctx.last_close,
                    horizon,
                    [p.id for p in ctx.passages],
                    Jsonb(ctx.indicators),
                    answer.recommendation,
                    answer.confidence,
                    Jsonb(answer.model_dump(mode="json")),
                ),
            ).fetchone()
        return answer.model_copy(update={"id": row[0], "created_at": row[1]})

    def history(self, symbol: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored answers, newest first."""
        sql = (
            "SELECT id, created_at, symbol, question, backend, model, fallback_reason,"
            " forecast_version, last_bar, passage_ids, recommendation, confidence, outcome"
            " FROM analysis_answers"
        )
        params: list[object] = []
        if symbol is not None:
            validate_symbol(symbol)
            sql += " WHERE symbol = %s"
            params.append(symbol)
        sql += " ORDER BY id DESC LIMIT %s"
        params.append(max(1, min(limit, 500)))
        keys = (
            "id",
            "created_at",
            "symbol",
            "question",
            "backend",
            "model",
            "fallback_reason",
            "forecast_version",
            "last_bar",
            "passage_ids",
            "recommendation",
            "confidence",
            "outcome",
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        if not rows and symbol is not None:
            with self._db.connection() as conn:
                if (
                    conn.execute("SELECT 1 FROM symbols WHERE symbol=%s", (symbol,)).fetchone()
                    is None
                ):
                    raise NotFoundError(f"symbol {symbol} not found")
        return [dict(zip(keys, r, strict=True)) for r in rows]
