"""Closed-loop scoring: was the advice worth anything?

Every stored answer names its symbol, the last bar it saw, that bar's close and
a horizon in bars. Once that many newer bars exist, ``score_answers`` looks at
the close ``horizon`` bars later and records what following the advice would
have returned (buy: long, sell: short, hold: flat), next to two baselines: the
always-hold answer (return 0) and the plain forecast-direction signal (long
when the forecast's last mean is above the last close, else short). The
scoring uses only bars after the answer's last bar, so there is no look-ahead
in the advice itself; ``Analyst.analyze(..., as_of=...)`` produces past answers
that saw only what was known then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from kitrade.data.answers import list_outcomes, record_outcome, unscored_answers
from kitrade.data.bars import close_after
from kitrade.schemas import validate_symbol

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["ScoreSummary", "score_answers", "score_summary"]

_SIGN = {"buy": 1.0, "sell": -1.0, "hold": 0.0}


class StrategyScore(BaseModel):
    """How one way of acting on the answers did."""

    trades: int  # positions taken (non-flat)
    hit_rate: float | None  # share of positions with a positive return
    mean_return: float | None  # mean return per answer (flat counts as 0)
    total_return: float  # sum of returns over all scored answers


class ScoreSummary(BaseModel):
    """Scored answers against always-hold and the forecast-direction signal."""

    symbol: str | None
    scored: int
    pending: int
    newly_scored: int = 0
    advice: StrategyScore
    always_hold: StrategyScore
    forecast_direction: StrategyScore
    beats_hold: bool | None
    beats_forecast_direction: bool | None
    verdict: str


def score_answers(db: Database, *, symbol: str | None = None, limit: int = 10_000) -> int:
    """Score every unscored answer whose horizon has passed; returns how many were scored.

    Args:
        db: The store.
        symbol: Only this symbol's answers.
        limit: At most this many answers per call.
    """
    if symbol is not None:
        validate_symbol(symbol)
    done = 0
    with db.connection() as conn:
        rows = unscored_answers(conn, symbol=symbol, limit=limit)
        for aid, sym, last_bar, last_close, horizon, rec, forecast_end in rows:
            exit_row = close_after(conn, symbol=sym, after=last_bar, bars=horizon)
            if exit_row is None:
                continue  # the horizon has not passed yet
            ret = float(exit_row[1]) / float(last_close) - 1.0
            fsign = None
            if forecast_end is not None:
                fsign = 1.0 if forecast_end > last_close else -1.0
            outcome = {
                "exit_ts": exit_row[0].isoformat(),
                "exit_close": float(exit_row[1]),
                "realized_return": ret,
                "advice_return": _SIGN.get(rec, 0.0) * ret,
                "hit": None if rec == "hold" else _SIGN[rec] * ret > 0,
                "forecast_direction_return": None if fsign is None else fsign * ret,
            }
            record_outcome(conn, answer_id=aid, scored_at=datetime.now(UTC), outcome=outcome)
            done += 1
    return done


def _score(returns: list[float], positioned: list[bool]) -> StrategyScore:
    trades = [r for r, p in zip(returns, positioned, strict=True) if p]
    return StrategyScore(
        trades=len(trades),
        hit_rate=(sum(r > 0 for r in trades) / len(trades)) if trades else None,
        mean_return=(sum(returns) / len(returns)) if returns else None,
        total_return=float(sum(returns)),
    )


def score_summary(db: Database, *, symbol: str | None = None) -> ScoreSummary:
    """Aggregate the scored answers (of ``symbol``) against the two baselines."""
    if symbol is not None:
        validate_symbol(symbol)
    with db.connection() as conn:
        rows = list_outcomes(conn, symbol=symbol)
    scored = [(rec, o) for rec, o in rows if o is not None]
    advice = [o["advice_return"] for _, o in scored]
    fdir = [o["forecast_direction_return"] for _, o in scored]
    fdir_known = [r for r in fdir if r is not None]
    s_advice = _score(advice, [rec != "hold" for rec, _ in scored])
    s_hold = _score([0.0] * len(scored), [False] * len(scored))
    s_fdir = _score(fdir_known, [True] * len(fdir_known))
    beats_hold = None if not scored else s_advice.total_return > 0
    beats_fdir = None
    if fdir_known:
        beats_fdir = s_advice.total_return > s_fdir.total_return
    if not scored:
        verdict = "no answer has reached its horizon yet; nothing to judge"
    else:
        verdict = (
            f"{len(scored)} answers scored: following the advice returned "
            f"{s_advice.total_return:+.2%} in total vs 0.00% for always-hold"
            + (
                f" and {s_fdir.total_return:+.2%} for the forecast-direction signal"
                if fdir_known
                else ""
            )
            + ("; too few answers to tell skill from luck" if len(scored) < 30 else "")
        )
    return ScoreSummary(
        symbol=symbol,
        scored=len(scored),
        pending=len(rows) - len(scored),
        advice=s_advice,
        always_hold=s_hold,
        forecast_direction=s_fdir,
        beats_hold=beats_hold,
        beats_forecast_direction=beats_fdir,
        verdict=verdict,
    )
