"""The optional vLLM application (``ray.serve.llm``), sized by ``KITRADE_LLM_GPU_FRACTION``.

``llm_config`` turns the typed ``LLMArgs`` and the settings into the one
``LLMConfig`` dict that ``ray.serve.llm.build_openai_app`` takes: each of the
``tensor_parallel_size`` GPUs is shared at ``llm_gpu_fraction`` (vLLM's
``gpu_memory_utilization`` and a matching placement-group bundle), leaving the
rest of each GPU to NHITS training and forecasts. ``build_app`` is referenced
from ``serve_config.yaml`` (``import_path: kitrade.deployments.llm:build_app``);
it needs ``pip install -e '.[gpu]'`` (vLLM) on the cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["LLMArgs", "build_app", "llm_config"]


class LLMArgs(BaseModel):
    """Arguments of the LLM application (``serve_config.yaml`` → ``args:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field("llama3.1:70b", min_length=1, description="name clients ask for")
    model_source: str = Field("meta-llama/Llama-3.1-70B-Instruct", min_length=1)
    tensor_parallel_size: int = Field(4, ge=1, le=64, description="GPUs per replica")
    max_model_len: int = Field(8192, ge=256, le=1_000_000)
    replicas: int = Field(1, ge=1, le=64)


def llm_config(args: LLMArgs, settings: Settings) -> dict[str, Any]:
    """The ``LLMConfig`` (as a dict) of the vLLM app: ``llm_gpu_fraction`` of each GPU."""
    share = settings.llm_gpu_fraction
    return {
        "model_loading_config": {"model_id": args.model_id, "model_source": args.model_source},
        "deployment_config": {
            "autoscaling_config": {"min_replicas": args.replicas, "max_replicas": args.replicas}
        },
        "engine_kwargs": {
            "tensor_parallel_size": args.tensor_parallel_size,
            "gpu_memory_utilization": share,
            "max_model_len": args.max_model_len,
        },
        # Ray schedules the fraction; vLLM keeps its memory to it.
        "placement_group_config": {
            "bundles": [{"GPU": share, "CPU": 1}] * args.tensor_parallel_size,
            "strategy": "PACK",
        },
    }


def build_app(args: dict[str, Any] | LLMArgs) -> Any:
    """The OpenAI-compatible vLLM application (``kitrade.deployments.llm:build_app``)."""
    from ray.serve.llm import build_openai_app  # needs vLLM: only GPU clusters import it

    from kitrade.config import load_settings

    a = args if isinstance(args, LLMArgs) else LLMArgs(**args)
    return build_openai_app({"llm_configs": [llm_config(a, load_settings())]})
