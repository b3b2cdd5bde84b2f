"""Training-layer tables (migrations 100-199): model versions, runs, progress, triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitrade.data.migrations import _sql, register

if TYPE_CHECKING:
    import psycopg

__all__ = ["legacy_metrics"]

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


def legacy_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Stored evaluation metrics from before migration 101, named as forecasters name them.

    What was called ``mase`` (MAE over naive's MAE on the same points) becomes
    ``rmae`` in each method's block; ``windows`` becomes ``n_origins``. Those
    evaluations had a few windows and no significance test, so nothing backs a
    claim to beat naive: ``beats_naive`` becomes false with the verdict "no
    better than naive" and no Diebold-Mariano figures. Idempotent.
    """
    out = dict(metrics)
    for key in ("model", "naive", "seasonal_naive"):
        block = out.get(key)
        if isinstance(block, dict) and "mase" in block and "rmae" not in block:
            block = dict(block)
            block["rmae"] = block.pop("mase")
            out[key] = block
    if "windows" in out and "n_origins" not in out:
        out["n_origins"] = out.pop("windows")
    if out and "verdict" not in out:
        out["beats_naive"] = False
        out["verdict"] = "no better than naive"
        out.update(dm_stat=None, dm_pvalue=None, dm_stat_1=None, dm_pvalue_1=None)
    return out


@register(101, "model metrics: mase -> rmae, n_origins, verdicts only from the DM test")
def _rename_metrics(conn: psycopg.Connection) -> None:
    # The registry owns the model_versions rows (and their SQL); it imports nothing of this.
    from kitrade.training.registry import rewrite_metrics

    rewrite_metrics(conn, legacy_metrics)


register(102, "model versions: scope (symbol | shared) and the shared model's group")(
    _sql(
        """
        ALTER TABLE model_versions
            ADD COLUMN scope text NOT NULL DEFAULT 'symbol'
                CHECK (scope IN ('symbol', 'shared')),
            ADD COLUMN model_group text;
        -- every symbol of a shared model has its own row pointing at one artifact
        CREATE INDEX model_versions_artifact ON model_versions (artifact_path);
        """
    )
)


register(103, "forecast band calibration kept online per model version and symbol")(
    _sql(
        """
        CREATE TABLE forecast_calibration (
            version text NOT NULL,  -- a model_versions id; a deleted version's row is unused
            symbol text NOT NULL,
            -- the conformal state (scores, levels) and what the forecast answer shows of it
            state jsonb NOT NULL,
            summary jsonb NOT NULL,
            through timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (version, symbol)
        );
        """
    )
)
