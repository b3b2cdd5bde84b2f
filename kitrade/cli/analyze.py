"""``kitrade analyze``: ask a trading question, or score past answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kitrade.cli import deps
from kitrade.cli.render import answer_lines, out, score_table
from kitrade.errors import InvalidInputError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["analyze_cmd"]


def analyze_cmd(
    symbol: Annotated[str, typer.Argument(help="Symbol to ask about, or `score`")],
    question: Annotated[str | None, typer.Argument(help="The question")] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Answer with only what was known at this ISO date/time"),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--symbol", help="With `score`: only this symbol")
    ] = None,
) -> None:
    """Ask a trading question about SYMBOL (LLM if configured, else the offline analyst).

    `kitrade analyze score` scores past answers whose horizon has passed against what the
    price then did, next to always-hold and the forecast-direction signal.
    """
    settings = deps.settings()
    if symbol == "score" and question is None:
        _score(settings, only)
        return
    if question is None:
        raise InvalidInputError("question: expected a question after the symbol")
    from kitrade.services import analysis, knowledge  # ray + chromadb (the knowledge actor)
    from kitrade.services.forecasting import local_forecaster  # torch (in-process models)

    req = analysis.validated_request(symbol, question, as_of)
    kb = knowledge.knowledge_actor(settings)
    with deps.store(settings) as db:
        analyst = analysis.build_analyst(settings, db, kb=kb, forecast=local_forecaster(db))
        answer = analysis.analyze(
            analyst, symbol=req.symbol, question=req.question, as_of=req.as_of
        )
    answer_lines(answer)


def _score(settings: Settings, symbol: str | None) -> None:
    from kitrade.services import analysis  # pandas/psycopg: not needed for --help

    with deps.store(settings) as db:
        summary = analysis.score(db, symbol=symbol)
    out.print(score_table(summary, symbol))
    out.print(
        f"newly scored {summary.newly_scored}, scored {summary.scored}, pending {summary.pending}"
    )
    out.print(summary.verdict, highlight=False)
