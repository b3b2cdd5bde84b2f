"""The data contract of the analysis layer: context in, structured answer out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["NOTICE", "AnalysisAnswer", "AnalysisContext", "AnalyzeRequest", "LLMAnswer", "Passage"]

NOTICE = (
    "Not financial advice: kitrade's analysis is generated from models and documents that can be "
    "wrong. Do your own research and never risk money you cannot afford to lose."
)


class Passage(BaseModel):
    """A retrieved knowledge chunk."""

    id: str
    text: str
    source: str = ""
    title: str = ""
    date: str | None = None
    score: float | None = None


class AnalysisContext(BaseModel):
    """Everything an analyst (offline or LLM) may use to answer, all of it data."""

    symbol: str
    question: str
    timeframe: str
    last_bar: datetime | None = None
    last_close: float | None = None
    bars_summary: dict[str, Any] = Field(default_factory=dict)  # returns, ranges, volatility
    indicators: dict[str, float | None] = Field(default_factory=dict)  # rsi_14, macd, atr_14…
    forecast: dict[str, Any] | None = None  # version, horizon, points [{ds, mean, lo_80…}]
    evaluation: dict[str, Any] | None = None  # model/naive/seasonal_naive metrics, beats_naive
    passages: list[Passage] = Field(default_factory=list)


class LLMAnswer(BaseModel):
    """The JSON an LLM must return (validated strictly)."""

    model_config = ConfigDict(extra="forbid")

    recommendation: Literal["buy", "sell", "hold"]
    confidence: float = Field(..., ge=0, le=1)
    horizon: str = Field(..., max_length=100)
    rationale: str = Field(..., min_length=1, max_length=4000)
    risks: list[str] = Field(default_factory=list, max_length=20)
    cited_source_ids: list[str] = Field(default_factory=list, max_length=20)


class AnalysisAnswer(LLMAnswer):
    """The answer kitrade returns: the LLM fields plus provenance."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    question: str
    backend: str  # "offline", "openai", "ollama"
    model: str | None = None
    fallback_reason: str | None = None
    forecast_version: str | None = None
    last_bar: datetime | None = None
    sources: list[Passage] = Field(default_factory=list)
    indicators: dict[str, float | None] = Field(default_factory=dict)
    warnings: list[str] = Field(
        default_factory=list,
        description="what the analyst's checks found wrong with the LLM's answer (e.g. a "
        "recommendation against its own indicators and forecast, a redacted secret)",
    )
    prompt_tokens: int | None = Field(default=None, description="estimated tokens sent to the LLM")
    prompt_trimmed: list[str] = Field(
        default_factory=list, description="what was cut to fit the LLM's context"
    )
    notice: str = NOTICE
    id: int | None = None
    created_at: datetime | None = None


class AnalyzeRequest(BaseModel):
    """Body of ``POST /api/v1/analyze`` (the old system's shape)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(..., pattern=r"^[A-Z0-9._-]{1,20}$")
    question: str = Field(..., min_length=1, max_length=2000)
    as_of: datetime | None = Field(
        None, description="answer with only what was known then (UTC when no offset is given)"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question must not be blank")
        return v

    @field_validator("as_of")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v
