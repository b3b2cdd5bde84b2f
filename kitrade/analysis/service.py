"""The analyst: grounded context, an LLM backend or the offline analyst, an audit trail.

``Analyst.analyze`` assembles the context for a question about a symbol (a
summary of the latest bars, indicators, the active forecast with its
intervals and the model's evaluation against naive, the top-k retrieved
passages), asks the configured LLM backend for a JSON answer and validates
it, falls back to the offline analyst (saying why) when the LLM is invalid,
late or unreachable, and stores the answer with everything that produced it.
An LLM answer is also reviewed against what the analyst computed itself
(``review_answer``): a recommendation against the indicators and forecast, a
redacted secret or system-prompt quote, or a cited passage that holds
instructions to the model is kept but flagged in ``warnings``.
Retrieval and forecasts come in as callables so the deployment can route
them through the knowledge actor and the forecast deployment.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitrade import observability
from kitrade.analysis.indicators import compute_indicators, summarize_bars
from kitrade.analysis.offline import offline_answer
from kitrade.analysis.prompt import REDACTED, PromptFit
from kitrade.analysis.schemas import AnalysisAnswer, AnalysisContext, LLMAnswer, Passage
from kitrade.data.answers import insert_answer, list_answers
from kitrade.data.bars import latest_bars, to_training_frame
from kitrade.data.symbols import get_symbol, symbol_exists
from kitrade.errors import ConflictError, KitradeError, NotFoundError, UpstreamError
from kitrade.schemas import ForecastPoint, validate_symbol
from kitrade.training.conformal import ConformalState, calibrated
from kitrade.training.nhits import FittedModel
from kitrade.training.registry import active_version, verify_artifact, version_as_of
from kitrade.training.spec import TIMEFRAME_DEFAULTS

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["Analyst", "review_answer"]

_log = logging.getLogger(__name__)
Search = Callable[[str, str, int, str | None], list[Passage]]  # (query, symbol, k, as_of date)
ForecastFn = Callable[[str], dict[str, Any] | None]  # symbol -> forecast dict or None
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(instructions?|rules|prompt)\b"
    r"|\bsystem prompt\b|\bapi[ _-]?key\b|\byou (are|must) now\b",
    re.IGNORECASE,
)


def review_answer(llm: LLMAnswer, ctx: AnalysisContext) -> list[str]:
    """What is wrong with a valid LLM answer, judged against the analyst's own numbers.

    Args:
        llm: The validated answer.
        ctx: The context that was sent.

    Returns:
        Warnings, in words (empty when none): a buy against a sell (or the other
        way round) of the offline analyst's reading of the same indicators and
        forecast; redacted secrets or system-prompt quotes; cited passages that
        carry instructions to the model.
    """
    warnings = []
    own = offline_answer(ctx)
    if {llm.recommendation, own.recommendation} == {"buy", "sell"}:
        warnings.append(
            f"the LLM recommends {llm.recommendation} against the indicators and forecast, "
            f"which point to {own.recommendation} (offline analyst, confidence "
            f"{own.confidence:.2f}); treat this answer with suspicion"
        )
    texts = [llm.rationale, llm.horizon, *llm.risks]
    if any(REDACTED in t for t in texts):
        warnings.append(
            "the answer quoted a secret or the system prompt; those parts were redacted"
        )
    cited = set(llm.cited_source_ids)
    suspicious = [p.id for p in ctx.passages if p.id in cited and _INSTRUCTION.search(p.text)]
    if suspicious:
        warnings.append(
            f"the answer cites passages that contain instructions to the model: {suspicious}"
        )
    return warnings


#: what the analyst sees of a model's evaluation: its metrics, the verdict against
#: naive (a Diebold-Mariano test) and the origins behind it.
_EVALUATION_KEYS = (
    "model",
    "naive",
    "seasonal_naive",
    "beats_naive",
    "verdict",
    "dm_stat",
    "dm_pvalue",
    "n_origins",
    "points",
)


#: what the analyst sees of a forecast answer: the calibrated bands and how they did against
#: the baselines (the raw bands and the per-step calibration state stay out of the prompt).
_FORECAST_KEYS = (
    "symbol",
    "version",
    "horizon",
    "last_bar",
    "points",
    "bands",
    "coverage_80",
    "coverage_95",
    "interval_score_ratio",
    "best_baseline",
    "baseline_beats_model",
)


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

    def context(self, symbol: str, question: str, as_of: datetime | None = None) -> AnalysisContext:
        """Everything the analyst may use, as data.

        With ``as_of`` only what was known then is used: bars up to that time,
        knowledge documents dated on or before that day, and the newest model
        version whose data ended by then (no forecast when there is none).
        """

        validate_symbol(symbol)
        with self._db.connection() as conn:
            sym = get_symbol(conn, symbol=symbol)
            if not sym.bars:
                bars = None
            elif as_of is None:
                bars = latest_bars(conn, symbol=symbol, n=300)
            else:
                bars = latest_bars(conn, symbol=symbol, n=300, until=as_of)
            active = active_version(conn, symbol=symbol) if as_of is None else None
            past = version_as_of(conn, symbol=symbol, as_of=as_of) if as_of is not None else None
        if bars is None or bars.empty:
            when = f" on or before {as_of.isoformat()}" if as_of is not None else ""
            raise ConflictError(f"{symbol} has no bars{when}; sync it first (POST /api/v1/sync)")
        forecast = None
        version = active if as_of is None else past
        try:
            if as_of is None and active is not None:
                forecast = self._forecast(symbol)
            elif past is not None:
                forecast = _forecast_from(past, symbol, bars)
            if forecast is not None:
                forecast = {k: forecast[k] for k in _FORECAST_KEYS if k in forecast}
        except KitradeError as exc:
            _log.warning("no forecast for %s: %s", symbol, exc.message)
        day = as_of.date().isoformat() if as_of is not None else None
        try:
            passages = self._search(f"{symbol}: {question}", symbol, self._k, day)
        except KitradeError as exc:
            _log.warning("knowledge search failed: %s", exc.message)
            passages = []
        evaluation = None
        if version is not None:
            m = version.metrics or {}
            evaluation = {k: m.get(k) for k in _EVALUATION_KEYS}
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

    def _llm_answer(self, fit: PromptFit, llm: LLMAnswer) -> AnalysisAnswer:
        ctx = fit.ctx
        cited = set(llm.cited_source_ids)
        return AnalysisAnswer(
            **llm.model_dump(),
            warnings=review_answer(llm, ctx),
            prompt_tokens=fit.prompt_tokens,
            prompt_trimmed=fit.trimmed,
            symbol=ctx.symbol,
            question=ctx.question,
            backend=self._backend.name,
            model=self._backend.model,
            forecast_version=(ctx.forecast or {}).get("version"),
            last_bar=ctx.last_bar,
            sources=[p for p in ctx.passages if p.id in cited] or ctx.passages,
            indicators=ctx.indicators,
        )

    def analyze(self, symbol: str, question: str, as_of: datetime | None = None) -> AnalysisAnswer:
        """Answer, falling back to the offline analyst when the LLM fails; stored for audit."""
        question = question.strip()
        ctx = self.context(symbol, question, as_of)
        answer: AnalysisAnswer
        if self._backend is None:
            answer = offline_answer(ctx)
        else:
            t0 = time.monotonic()
            fit: PromptFit | None = None
            try:
                fit = self._backend.fit(ctx)
                answer = self._llm_answer(fit, self._backend.answer(fit))
            except UpstreamError as exc:
                answer = self._fallback(ctx, exc, fit)
            observability.llm_call(self._backend.name, t0, answer.fallback_reason)
        return self._store(ctx, answer, as_of)

    def stream(
        self, symbol: str, question: str, as_of: datetime | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The answer as events: ``context``, then ``token`` per LLM fragment, then ``answer``.

        The LLM's streamed text is validated once complete, exactly like
        ``analyze``; an invalid, late or failed stream ends in the offline
        analyst's answer with its ``fallback_reason``. Errors about the request
        itself (unknown symbol, no bars) are raised before the first event.
        """

        question = question.strip()
        ctx = self.context(symbol, question, as_of)
        fit: PromptFit | UpstreamError | None = None
        if self._backend is not None:
            try:
                fit = self._backend.fit(ctx)
            except UpstreamError as exc:
                fit = exc
        sent = fit.ctx if isinstance(fit, PromptFit) else ctx
        yield ("context", self._context_event(sent))
        if self._backend is None:
            answer = offline_answer(ctx)
        else:
            parts: list[str] = []
            t0 = time.monotonic()
            try:
                if not isinstance(fit, PromptFit):
                    raise fit or UpstreamError("no prompt was built")
                for piece in self._backend.stream(fit):
                    parts.append(piece)
                    yield ("token", {"text": piece})
                answer = self._llm_answer(fit, self._backend.validate("".join(parts), fit.ctx))
            except UpstreamError as exc:
                answer = self._fallback(ctx, exc, fit if isinstance(fit, PromptFit) else None)
            observability.llm_call(self._backend.name, t0, answer.fallback_reason)
        yield ("answer", self._store(ctx, answer, as_of).model_dump(mode="json"))

    def _fallback(
        self, ctx: AnalysisContext, exc: UpstreamError, fit: PromptFit | None
    ) -> AnalysisAnswer:
        """The offline answer, saying why, with the prompt's size when one was sent."""
        answer = offline_answer(ctx, fallback_reason=f"{self._backend.name}: {exc.message}")
        if fit is None:
            return answer
        return answer.model_copy(
            update={"prompt_tokens": fit.prompt_tokens, "prompt_trimmed": fit.trimmed}
        )

    def _context_event(self, ctx: AnalysisContext) -> dict[str, Any]:
        return {
            "symbol": ctx.symbol,
            "last_bar": ctx.last_bar.isoformat() if ctx.last_bar else None,
            "last_close": ctx.last_close,
            "indicators": ctx.indicators,
            "forecast_version": (ctx.forecast or {}).get("version"),
            "passages": [{"id": p.id, "title": p.title, "source": p.source} for p in ctx.passages],
            "backend": self._backend.name if self._backend is not None else "offline",
        }

    def _store(
        self, ctx: AnalysisContext, answer: AnalysisAnswer, as_of: datetime | None = None
    ) -> AnalysisAnswer:
        points = (ctx.forecast or {}).get("points") or []
        horizon = len(points) or TIMEFRAME_DEFAULTS.get(ctx.timeframe, {}).get("horizon", 24)
        forecast_end = points[-1].get("mean") if points else None
        fields = {
            "symbol": ctx.symbol,
            "question": ctx.question,
            "backend": answer.backend,
            "model": answer.model,
            "fallback_reason": answer.fallback_reason,
            "forecast_version": answer.forecast_version,
            "last_bar": ctx.last_bar,
            "last_close": ctx.last_close,
            "horizon_bars": horizon,
            "passage_ids": [p.id for p in ctx.passages],
            "indicators": ctx.indicators,
            "recommendation": answer.recommendation,
            "confidence": answer.confidence,
            "answer": answer.model_dump(mode="json"),
            "as_of": as_of,
            "forecast_end": forecast_end,
            "prompt_tokens": answer.prompt_tokens,
            "prompt_trimmed": answer.prompt_trimmed,
        }
        with self._db.connection() as conn:
            answer_id, created_at = insert_answer(conn, fields=fields)
        return answer.model_copy(update={"id": answer_id, "created_at": created_at})

    def require_symbol(self, symbol: str) -> None:
        """Raise ``NotFoundError`` unless ``symbol`` exists."""
        validate_symbol(symbol)
        with self._db.connection() as conn:
            if not symbol_exists(conn, symbol=symbol):
                raise NotFoundError(f"symbol {symbol} not found")

    def history(self, symbol: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored answers, newest first."""
        if symbol is not None:
            validate_symbol(symbol)
        with self._db.connection() as conn:
            rows = list_answers(conn, symbol=symbol, limit=max(1, min(limit, 500)))
            if not rows and symbol is not None and not symbol_exists(conn, symbol=symbol):
                raise NotFoundError(f"symbol {symbol} not found")
        return rows


def _forecast_from(version: Any, symbol: str, bars: Any) -> dict[str, Any]:
    """A forecast by ``version`` from ``bars`` (for questions asked "as of" a past date)."""
    path = Path(version.artifact_path)
    try:
        verify_artifact(path)
        model = FittedModel.load(path)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConflictError(f"{version.version} cannot be loaded: {exc}") from None
    out = model.predict_many(
        [to_training_frame(symbol, bars.tail(max(model.config.input_size, 2)))]
    )[0]
    state = model.calibration.get(symbol)
    if state is not None:  # as calibrated at the end of its evaluation: known by then
        factors = ConformalState.from_json(state).summary().levels
        bands = calibrated(
            {c: out[c].to_numpy() for c in out.columns if c != "ds"},
            {k: level.factor[: len(out)] for k, level in factors.items()},
        )
        out = out.assign(**bands)
    return {
        "symbol": symbol,
        "version": version.version,
        "horizon": len(out),
        "last_bar": bars["ts"].iloc[-1].isoformat(),
        "bands": "calibrated" if state is not None else "raw",
        "points": [ForecastPoint(**r).model_dump(mode="json") for r in out.to_dict("records")],
    }
