"""Ray Train for large shared-model groups: one NHITS fitted data-parallel across workers.

A group whose bars reach ``KITRADE_TRAIN_DISTRIBUTED_MIN_BARS`` trains with
``ray.train.torch.TorchTrainer`` instead of one Ray task. Each of the
``KITRADE_TRAIN_DISTRIBUTED_WORKERS`` workers (never more than the group has
series) takes its own shard of the series (rank ``r`` of ``w`` takes series
``r, r + w, ...``) and fits the same NHITS through neuralforecast, whose
Lightning Trainer gets Ray's DDP strategy and cluster environment: gradients
are averaged across the shards every step, so the workers end with one model
trained on every series. neuralforecast seeds every rank alike, so the shards,
not the seed, are what make the workers' work differ.

Process groups: gloo on CPU; on GPUs, NCCL only when each worker holds a whole
GPU (``KITRADE_TRAIN_GPU_FRACTION`` = 1). Workers that share a GPU (a fraction
such as 0.4, two ranks on one device) cannot form an NCCL group, so they use
gloo, which all-reduces CUDA tensors too.

Rank 0 reports steps and losses to the progress actor for every symbol of the
group. After the fit every rank evaluates its own shard (rolling origins, as
for any shared model) and writes the reports into the Ray Train checkpoint
under ``<models dir>/ray_train/<name>/`` (one kept per run), where rank 0 also
saves the fitted model (``FittedModel.save``). The caller loads both from
there and writes the served artifact under ``models/shared/<group>/`` as usual.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kitrade.cluster import cluster_cpus, cluster_gpus
from kitrade.errors import ConfigError, DistributedTrainingError
from kitrade.training.evaluation import (
    EvaluationReport,
    attach_calibration,
    evaluate_shared,
    shared_train_frame,
)
from kitrade.training.nhits import FittedModel, _nf
from kitrade.training.spec import NHITSConfig
from kitrade.training.tasks import LightningProgress, pick_accelerator

if TYPE_CHECKING:
    from collections.abc import Callable

    from kitrade.config import Settings

__all__ = ["WorkerPlan", "fit_shared_distributed", "is_distributed", "worker_plan"]

_log = logging.getLogger(__name__)
#: Trainer options only a Ray Train worker can use; stripped before the model is saved.
_RAY_TRAINER_KWARGS = ("strategy", "plugins", "use_distributed_sampler")
_MODEL_DIR = "model"
_EVALUATION = "evaluation-rank"


def is_distributed(settings: Settings, total_bars: int) -> bool:
    """Whether a group of ``total_bars`` bars trains with Ray Train (0 turns it off)."""
    threshold = settings.train_distributed_min_bars
    return threshold > 0 and total_bars >= threshold


@dataclass(frozen=True)
class WorkerPlan:
    """How many Ray Train workers, what each asks for, and the process-group backend."""

    workers: int
    use_gpu: bool
    resources: dict[str, float]
    backend: str

    def describe(self) -> str:
        """e.g. ``"2 workers, gloo"`` (for progress details)."""
        gpu = f" x{self.resources['GPU']:g} GPU" if self.use_gpu else ""
        return f"{self.workers} workers{gpu}, {self.backend}"


def worker_plan(settings: Settings, series: int) -> WorkerPlan:
    """Workers for a group of ``series`` series: 1 CPU each, at most one per series and CPU.

    Never more workers than the cluster has CPUs (or GPU shares): a worker
    group the cluster can never place would fail instead of waiting.

    With ``NHITS_USE_GPU`` and GPUs in the cluster each worker also asks for
    ``KITRADE_TRAIN_GPU_FRACTION`` of a GPU; NCCL needs a whole GPU per rank,
    so fractional shares use gloo (see the module docstring).
    """
    workers = min(settings.train_distributed_workers, series, int(cluster_cpus()))
    workers = max(1, workers)
    use_gpu = settings.nhits_use_gpu and cluster_gpus() > 0
    if not use_gpu:
        return WorkerPlan(workers, False, {"CPU": 1.0}, "gloo")
    fraction = settings.train_gpu_fraction
    workers = max(1, min(workers, int(cluster_gpus() / fraction + 1e-9)))  # GPUs too
    backend = "nccl" if fraction >= 1 else "gloo"
    return WorkerPlan(workers, True, {"CPU": 1.0, "GPU": fraction}, backend)


def fit_shared_distributed(
    settings: Settings,
    prepared: list[pd.DataFrame],
    config: NHITSConfig,
    *,
    name: str,
    plan: WorkerPlan,
    report: Callable[..., None] | None = None,
) -> tuple[FittedModel, dict[str, EvaluationReport], dict[str, Any]]:
    """Fit one NHITS on ``prepared`` (``evaluation.prepare_shared``'s frames) with Ray Train.

    Args:
        settings: Where checkpoints go (``<models dir>/ray_train``), GPU use.
        prepared: The group's series, checked and sorted.
        config: What to train.
        name: The Ray Train run's name (its checkpoint directory).
        plan: ``worker_plan``'s answer.
        report: ``report(step=..., train_loss=...)``, called on rank 0 (pickled to it).

    Returns:
        The fitted model (history: every series), each series' evaluation (every
        rank evaluates its own shard, as ``evaluation.evaluate_shared`` does) and
        rank 0's final metrics (``world_size``, ``series_trained`` summed over the
        ranks, ``backend``).

    Raises:
        DistributedTrainingError: A worker or the Ray Train controller failed.
        ConfigError: Ray's Lightning integration and neuralforecast use different
            Lightning packages.
    """
    # Heavy (ray.train): only a distributed group needs it.
    import ray.train

    _lightning_pieces()  # a mismatch is a clear error here, not a worker failure
    trainer = _trainer(settings, prepared, config, name=name, plan=plan, report=report)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise DistributedTrainingError(
            f"{name}: Ray Train failed: {lines[-1] if lines else type(exc).__name__}"
        ) from exc
    if result.checkpoint is None:
        raise DistributedTrainingError(f"{name}: Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        model = FittedModel.load(Path(directory) / _MODEL_DIR)
        evaluations = _evaluations(Path(directory), prepared, name)
    attach_calibration(model, evaluations)
    return model, evaluations, dict(result.metrics or {})


def _evaluations(
    directory: Path, prepared: list[pd.DataFrame], name: str
) -> dict[str, EvaluationReport]:
    """Each series' evaluation, as the ranks wrote them into the checkpoint."""
    found: dict[str, EvaluationReport] = {}
    for path in sorted(directory.glob(f"{_EVALUATION}*.json")):
        found |= {k: EvaluationReport(**v) for k, v in json.loads(path.read_text()).items()}
    missing = [
        str(f["unique_id"].iloc[0]) for f in prepared if str(f["unique_id"].iloc[0]) not in found
    ]
    if missing:
        raise DistributedTrainingError(f"{name}: no evaluation came back for {missing}")
    return found


def _trainer(
    settings: Settings,
    prepared: list[pd.DataFrame],
    config: NHITSConfig,
    *,
    name: str,
    plan: WorkerPlan,
    report: Callable[..., None] | None,
) -> Any:
    """The ``TorchTrainer`` of ``fit_shared_distributed`` (checkpoints in the models dir)."""
    # Heavy (ray.train, torch): only a distributed group needs them.
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    storage = settings.resolved_models_dir / "ray_train"
    storage.mkdir(parents=True, exist_ok=True)
    return TorchTrainer(
        _train_loop,
        train_loop_config={
            "settings": settings,
            "prepared": prepared,
            "config": config.model_dump(mode="json"),
            "report": report,
            "backend": plan.backend,
        },
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.use_gpu, resources_per_worker=plan.resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )


def _train_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker: fit on this rank's shard, evaluate it; rank 0 saves the model."""
    # Heavy (ray.train, torch): runs only inside a Ray Train worker.
    import ray.train
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings: Settings = cfg["settings"]
    config = NHITSConfig(**cfg["config"])
    prepared: list[pd.DataFrame] = cfg["prepared"]
    shard = prepared[rank::world]
    report = cfg["report"] if rank == 0 else None
    callbacks = [] if report is None else [LightningProgress.make(report, config.max_steps)]
    nf = _nf(
        config,
        callbacks=callbacks,
        accelerator=pick_accelerator(settings, threads=1),
        devices="auto",
        trainer_kwargs=_ray_trainer_kwargs(),
    )
    nf.fit(df=shared_train_frame(shard, config), val_size=config.val_size)
    _single_process(nf)
    trained = _sum_over_ranks(len(shard)) if dist.is_initialized() else len(shard)
    metrics = {"world_size": world, "series_trained": trained, "backend": cfg["backend"]}
    # Every rank holds the same weights now: each evaluates its own shard, so the
    # rolling-origin evaluation is spread over the workers like the training.
    mine = FittedModel(nf=nf, config=config, history=pd.concat(shard, ignore_index=True))
    evaluated = {
        uid: r.model_dump(mode="json") | {"calibration_state": r.calibration_state}
        for uid, r in evaluate_shared(mine, shard, config).items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{_EVALUATION}{rank}.json").write_text(json.dumps(evaluated))
        if rank == 0:
            model = FittedModel(
                nf=nf, config=config, history=pd.concat(prepared, ignore_index=True)
            )
            model.save(Path(tmp) / _MODEL_DIR)
        # The ranks agree on one checkpoint directory: their files land side by side.
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _ray_trainer_kwargs() -> dict[str, Any]:
    """Ray's Lightning pieces for neuralforecast's Trainer; the shards replace the sampler."""
    strategy, environment = _lightning_pieces()
    return {"strategy": strategy(), "plugins": [environment()], "use_distributed_sampler": False}


def _lightning_pieces() -> tuple[type, type]:
    """Ray's ``RayDDPStrategy`` and ``RayLightningEnvironment``, checked against ours.

    Raises:
        ConfigError: Ray's Lightning utilities use ``lightning.pytorch`` while
            neuralforecast uses ``pytorch_lightning`` (both installed): their
            strategy classes would not match.
    """
    # Heavy (ray.train, lightning): only a distributed group needs them.
    import pytorch_lightning as pl
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    if not issubclass(RayDDPStrategy, pl.strategies.Strategy):
        raise ConfigError(
            "Ray Train's Lightning integration imports `lightning.pytorch`, neuralforecast "
            "`pytorch_lightning`: uninstall `lightning` or align the two"
        )
    return RayDDPStrategy, RayLightningEnvironment


def _single_process(nf: Any) -> None:
    """Drop the Ray strategy and plugins from a fitted model: it saves, loads, predicts alone."""
    for model in nf.models:
        for key in _RAY_TRAINER_KWARGS:
            model.trainer_kwargs.pop(key, None)
            model.hparams.pop(key, None)
        model.trainer_kwargs["devices"] = 1


def _sum_over_ranks(value: int) -> int:
    """``value`` summed over every rank of the process group (proof each rank trained)."""
    # Heavy (torch): runs only inside a Ray Train worker.
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return int(tensor.item())
