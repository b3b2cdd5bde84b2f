"""Stored analysis answers (``analysis_answers``): record, list, score.

Plain, keyword-only functions over an explicit connection; the analyst
(``kitrade.analysis.service``) and the scoring (``kitrade.analysis.scoring``)
hold the rules, this module only the SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from kitrade.data.db import one_row

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "HISTORY_KEYS",
    "insert_answer",
    "list_answers",
    "list_outcomes",
    "record_outcome",
    "unscored_answers",
]

#: Columns of ``list_answers`` rows, in order.
HISTORY_KEYS = (
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
    "prompt_tokens",
    "prompt_trimmed",
)


def insert_answer(conn: psycopg.Connection, *, fields: dict[str, Any]) -> tuple[int, datetime]:
    """Store one answer; returns its ``(id, created_at)``.

    Args:
        conn: connection.
        fields: symbol, question, backend, model, fallback_reason, forecast_version,
            last_bar, last_close, horizon_bars, passage_ids, indicators (dict),
            recommendation, confidence, answer (dict), as_of, forecast_end, and
            optionally prompt_tokens (estimated tokens sent to the LLM) and
            prompt_trimmed (what was cut to fit its context).
    """
    row = conn.execute(
        "INSERT INTO analysis_answers (symbol, question, backend, model, fallback_reason,"
        " forecast_version, last_bar, last_close, horizon_bars, passage_ids, indicators,"
        " recommendation, confidence, answer, as_of, forecast_end, prompt_tokens, prompt_trimmed)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, created_at",
        (
            fields["symbol"],
            fields["question"],
            fields["backend"],
            fields["model"],
            fields["fallback_reason"],
            fields["forecast_version"],
            fields["last_bar"],
            fields["last_close"],
            fields["horizon_bars"],
            fields["passage_ids"],
            Jsonb(fields["indicators"]),
            fields["recommendation"],
            fields["confidence"],
            Jsonb(fields["answer"]),
            fields["as_of"],
            fields["forecast_end"],
            fields.get("prompt_tokens"),
            list(fields.get("prompt_trimmed") or []),
        ),
    ).fetchone()
    answer_id, created_at = one_row(row, "recording an answer")
    return int(answer_id), created_at


def list_answers(
    conn: psycopg.Connection, *, symbol: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Stored answers, newest first (``HISTORY_KEYS`` as keys)."""
    sql = (
        "SELECT id, created_at, symbol, question, backend, model, fallback_reason,"
        " forecast_version, last_bar, passage_ids, recommendation, confidence, outcome,"
        " prompt_tokens, prompt_trimmed FROM analysis_answers"
    )
    params: list[object] = []
    if symbol is not None:
        sql += " WHERE symbol = %s"
        params.append(symbol)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    return [dict(zip(HISTORY_KEYS, r, strict=True)) for r in conn.execute(sql, params).fetchall()]


def unscored_answers(
    conn: psycopg.Connection, *, symbol: str | None = None, limit: int = 10_000
) -> list[tuple[Any, ...]]:
    """Answers not scored yet that carry what scoring needs, oldest first.

    Each row: id, symbol, last_bar, last_close, horizon_bars, recommendation, forecast_end.
    """
    sql = (
        "SELECT id, symbol, last_bar, last_close, horizon_bars, recommendation, forecast_end"
        " FROM analysis_answers WHERE scored_at IS NULL AND last_bar IS NOT NULL"
        " AND last_close IS NOT NULL AND horizon_bars > 0"
    )
    params: list[Any] = []
    if symbol is not None:
        sql += " AND symbol = %s"
        params.append(symbol)
    sql += " ORDER BY id LIMIT %s"
    params.append(limit)
    return conn.execute(sql, params).fetchall()


def record_outcome(
    conn: psycopg.Connection, *, answer_id: int, scored_at: datetime, outcome: dict[str, Any]
) -> None:
    """Store what following answer ``answer_id`` would have returned."""
    conn.execute(
        "UPDATE analysis_answers SET scored_at = %s, outcome = %s WHERE id = %s",
        (scored_at, Jsonb(outcome), answer_id),
    )


def list_outcomes(
    conn: psycopg.Connection, *, symbol: str | None = None
) -> list[tuple[str, dict[str, Any] | None]]:
    """``(recommendation, outcome or None)`` of every answer (of ``symbol``), oldest first."""
    if symbol is None:
        rows = conn.execute(
            "SELECT recommendation, outcome FROM analysis_answers ORDER BY id"
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT recommendation, outcome FROM analysis_answers WHERE symbol = %s ORDER BY id",
            (symbol,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]
