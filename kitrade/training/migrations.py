"""Training-layer tables (migrations 100-199): model versions, runs, progress, triggers."""

from __future__ import annotations

from kitrade.data.migrations import _sql, register

__all__: list[str] = []

register(100, "model registry, training runs, progress, retrain triggers")(
    _sql(
        """
        CREATE TABLE model_versions (
            version text PRIMARY KEY,
            symbol text NOT NULL,
            status text NOT NULL CHECK (status IN ('candidate', 'active', 'rejected', 'retired')),
            artifact_path text NOT NULL,
            config jsonb NOT NULL,
            metrics jsonb NOT NULL DEFAULT '{}'::jsonb,
            data_start timestamptz NOT NULL,
            data_end timestamptz NOT NULL,
            n_bars integer NOT NULL,
            run_id text,
            reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            promoted_at timestamptz
        );
        CREATE INDEX model_versions_symbol ON model_versions (symbol, created_at DESC);
        -- at most one active version per symbol, enforced by the database
        CREATE UNIQUE INDEX model_versions_one_active ON model_versions (symbol)
            WHERE status = 'active';

        CREATE TABLE training_runs (
            run_id text PRIMARY KEY,
            kind text NOT NULL DEFAULT 'train_all',
            trigger text NOT NULL DEFAULT 'manual',
            params jsonb NOT NULL DEFAULT '{}'::jsonb,
            status text NOT NULL DEFAULT 'running',
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );

        CREATE TABLE training_progress (
            run_id text NOT NULL REFERENCES training_runs (run_id) ON DELETE CASCADE,
            symbol text NOT NULL,
            state text NOT NULL,
            attempt integer NOT NULL DEFAULT 1,
            step integer NOT NULL DEFAULT 0,
            max_steps integer NOT NULL DEFAULT 0,
            train_loss double precision,
            val_loss double precision,
            started_at timestamptz,
            ended_at timestamptz,
            error text,
            detail text,
            version text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, symbol)
        );

        CREATE TABLE retrain_triggers (
            id bigserial PRIMARY KEY,
            symbol text NOT NULL,
            reason text NOT NULL,
            detail jsonb NOT NULL DEFAULT '{}'::jsonb,
            run_id text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX retrain_triggers_symbol ON retrain_triggers (symbol, id DESC);

        CREATE TABLE tune_results (
            id bigserial PRIMARY KEY,
            sweep_id text NOT NULL,
            symbol text NOT NULL,
            trial_id text NOT NULL,
            config jsonb NOT NULL,
            val_loss double precision,
            status text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX tune_results_sweep ON tune_results (sweep_id, val_loss);
        """
    )
)
