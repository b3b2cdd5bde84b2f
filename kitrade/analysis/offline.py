"""The offline analyst: deterministic, grounded buy / sell / hold.

Signals, each in [-1, 1]:

- **forecast**: expected move to the horizon's mean, in units of the bar
  volatility scaled to the horizon (``move / (vol * sqrt(h))``), clipped;
  weighted by the model's skill: full weight when its evaluation says it
  beats naive (a Diebold-Mariano test at 5 % over many rolling origins), 0.2
  when it is no better than naive (it says little), 0.5 with no evaluation;
  halved when the 80 % interval straddles the last close;
- **momentum**: MACD histogram sign, and price above/below SMA 50;
- **RSI**: overbought (> 70) argues against buying, oversold (< 30) against selling.

Score = 0.6 forecast + 0.25 momentum + 0.15 RSI. ``|score| < 0.2`` → hold.
Confidence = ``min(0.9, |score|)``, capped at 0.35 when the model does not
beat naive or there is no forecast.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from kitrade.analysis.schemas import AnalysisAnswer, AnalysisContext, Passage

__all__ = ["MODEL_NAME", "offline_answer"]

MODEL_NAME = "offline-analyst-v1"
_WORDS = ("rsi", "macd", "risk", "stop", "interval", "forecast", "naive", "volatility", "trend")


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def _forecast_signal(ctx: AnalysisContext) -> tuple[float, dict[str, Any]]:
    fc = ctx.forecast or {}
    pts = fc.get("points") or []
    last = ctx.last_close
    if not pts or not last:
        return 0.0, {}
    end = pts[-1]
    move = end["mean"] / last - 1.0
    width = (end["hi_80"] - end["lo_80"]) / last
    straddles = end["lo_80"] <= last <= end["hi_80"]
    vol = ctx.indicators.get("volatility_20") or ctx.indicators.get("atr_pct") or 0.0
    scale = vol * math.sqrt(len(pts)) if vol else abs(move) or 1.0
    raw = _clip(move / scale) if scale else 0.0
    evaluation = ctx.evaluation or {}
    rmae = (evaluation.get("model") or {}).get("rmae")
    beats = evaluation.get("beats_naive")
    skill = 0.5 if beats is None else (1.0 if beats else 0.2)
    weight = skill * (0.5 if straddles else 1.0)
    return raw * weight, {
        "move": move,
        "width": width,
        "straddles": straddles,
        "rmae": rmae,
        "beats_naive": beats,
        "dm_pvalue": evaluation.get("dm_pvalue"),
        "n_origins": evaluation.get("n_origins"),
        "h": len(pts),
        "skill": skill,
    }


def _pick_passages(ctx: AnalysisContext, n: int = 3) -> list[Passage]:
    scored = sorted(ctx.passages, key=lambda p: -sum(w in p.text.lower() for w in _WORDS))
    return scored[:n]


def offline_answer(ctx: AnalysisContext, *, fallback_reason: str | None = None) -> AnalysisAnswer:
    """Decide from the context alone; same context, same answer."""
    ind = ctx.indicators
    f_sig, f = _forecast_signal(ctx)
    hist = ind.get("macd_hist")
    close, sma50 = ind.get("close"), ind.get("sma_50")
    momentum = 0.0
    if hist is not None:
        momentum += 0.5 if hist > 0 else -0.5 if hist < 0 else 0.0
    if close is not None and sma50 is not None:
        momentum += 0.5 if close > sma50 else -0.5 if close < sma50 else 0.0
    r = ind.get("rsi_14")
    rsi_sig = 0.0 if r is None else (-1.0 if r > 70 else 1.0 if r < 30 else 0.0)
    score = 0.6 * f_sig + 0.25 * momentum + 0.15 * rsi_sig
    rec: Literal["buy", "sell", "hold"] = (
        "hold" if abs(score) < 0.2 else ("buy" if score > 0 else "sell")
    )
    beats = (ctx.evaluation or {}).get("beats_naive")
    confidence = min(0.9, abs(score)) if rec != "hold" else max(0.1, 0.5 - abs(score))
    if ctx.forecast is None or beats is not True:
        confidence = min(confidence, 0.35)
    confidence = round(confidence, 3)

    cites = _pick_passages(ctx)
    parts = _rationale(ctx, f, score, rec, cites)
    risks = _risks(ctx, f)
    horizon = f"{f.get('h') or (ctx.forecast or {}).get('horizon') or 24} bars ({ctx.timeframe})"
    return AnalysisAnswer(
        recommendation=rec,
        confidence=confidence,
        horizon=horizon,
        rationale=" ".join(parts),
        risks=risks,
        cited_source_ids=[p.id for p in cites],
        symbol=ctx.symbol,
        question=ctx.question,
        backend="offline",
        model=MODEL_NAME,
        fallback_reason=fallback_reason,
        forecast_version=(ctx.forecast or {}).get("version"),
        last_bar=ctx.last_bar,
        sources=ctx.passages,
        indicators=ctx.indicators,
    )


def _rationale(
    ctx: AnalysisContext,
    f: dict[str, Any],
    score: float,
    rec: str,
    cites: list[Passage],
) -> list[str]:
    """The sentences that explain the call, from the same numbers that made it."""
    ind = ctx.indicators
    r, hist = ind.get("rsi_14"), ind.get("macd_hist")
    close, sma50 = ind.get("close"), ind.get("sma_50")
    parts = []
    if f:
        parts.append(
            f"The active model ({(ctx.forecast or {}).get('version')}) expects "
            f"{f['move'] * 100:+.2f} % over {f['h']} bars with an 80 % interval "
            f"{f['width'] * 100:.2f} % wide"
            + (" that contains the last close" if f["straddles"] else "")
            + _quality(f)
            + "."
        )
    else:
        parts.append("No trained model is active for this symbol, so only indicators are used.")
    if r is not None:
        parts.append(f"RSI(14) is {r:.1f}.")
    if hist is not None:
        parts.append(f"The MACD histogram is {hist:+.3g}.")
    if close is not None and sma50 is not None:
        parts.append(
            f"Price {close:.6g} is {'above' if close > sma50 else 'below'} "
            f"its 50-bar average {sma50:.6g}."
        )
    parts.append(f"Combined score {score:+.2f} → {rec}.")
    if cites:
        parts.append("See " + ", ".join(f"[{p.id}]" for p in cites) + ".")
    return parts


def _quality(f: dict[str, Any], lead: str = "; ") -> str:
    """The model's standing against naive in words: relative MAE, test, origins."""
    if f.get("rmae") is None:
        return ""
    verdict = "beats naive" if f.get("beats_naive") else "no better than naive"
    detail = [f"relative MAE {f['rmae']:.3f}"]
    if f.get("dm_pvalue") is not None:
        detail.append(f"Diebold-Mariano p={f['dm_pvalue']:.3g}")
    if f.get("n_origins"):
        detail.append(f"{f['n_origins']} origins")
    text = f"{verdict} ({', '.join(detail)})"
    return f"{lead}its evaluation: {text}" if lead else f" ({', '.join(detail)})"


def _risks(ctx: AnalysisContext, f: dict[str, Any]) -> list[str]:
    """What could make the call wrong, most specific first."""
    r, vol = ctx.indicators.get("rsi_14"), ctx.indicators.get("volatility_20")
    risks = []
    if ctx.forecast is None:
        risks.append("There is no trained model for this symbol yet; the call rests on indicators.")
    if f.get("beats_naive") is False:
        risks.append("The model is no better than the naive forecast" + _quality(f, lead="") + ".")
    if f.get("straddles"):
        risks.append("The 80 % interval contains today's price: the direction is uncertain.")
    if r is not None and (r > 70 or r < 30):
        risks.append(f"RSI {r:.1f} is at an extreme; reversals are common there.")
    if vol is not None and vol > 0.02:
        risks.append(f"Volatility is high ({vol * 100:.1f} % per bar).")
    risks.append("Use a stop loss and risk only a small share of your account per trade.")
    return risks
