"""Analysis-layer tables (migrations 200-299): the audit trail of answers."""

from __future__ import annotations

from kitrade.data.migrations import _sql, register

__all__: list[str] = []

register(200, "analysis answers audit trail")(
    _sql(
        """
        CREATE TABLE analysis_answers (
            id bigserial PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            symbol text NOT NULL,
            question text NOT NULL,
            backend text NOT NULL,
            model text,
            fallback_reason text,
            forecast_version text,
            last_bar timestamptz,
            last_close double precision,
            horizon_bars integer,
            passage_ids text[] NOT NULL DEFAULT '{}',
            indicators jsonb NOT NULL DEFAULT '{}'::jsonb,
            recommendation text NOT NULL,
            confidence double precision NOT NULL,
            answer jsonb NOT NULL,
            scored_at timestamptz,
            outcome jsonb
        );
        CREATE INDEX analysis_answers_symbol ON analysis_answers (symbol, id DESC);
        """
    )
)

register(201, "analysis answers: as-of date and the forecast's end value, for scoring")(
    _sql(
        """
        ALTER TABLE analysis_answers ADD COLUMN as_of timestamptz;
        ALTER TABLE analysis_answers ADD COLUMN forecast_end double precision;
        CREATE INDEX analysis_answers_unscored ON analysis_answers (id) WHERE scored_at IS NULL;
        """
    )
)

register(202, "analysis answers: the prompt's estimated tokens and what was trimmed to fit")(
    _sql(
        """
        ALTER TABLE analysis_answers ADD COLUMN prompt_tokens integer;
        ALTER TABLE analysis_answers ADD COLUMN prompt_trimmed text[] NOT NULL DEFAULT '{}';
        """
    )
)
