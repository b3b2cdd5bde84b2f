"""The vLLM application (``ray.serve.llm``) on a ``KITRADE_LLM_GPU_FRACTION`` share of each GPU.

``llm_app`` is the one place the LLM application's Serve config is made from the settings:
``ray.serve.llm:build_openai_app`` serving Llama 3.1 70B Instruct as ``llama3.1:70b``, each
of its tensor-parallel workers a placement-group bundle of ``llm_gpu_fraction`` GPU
(``STRICT_PACK``: a replica's workers stay on one node), ``VLLM_RAY_PER_WORKER_GPUS``
equal to that share and vLLM's ``gpu_memory_utilization`` a little under it, leaving the
rest of each GPU to one NHITS training task (``KITRADE_TRAIN_GPU_FRACTION``).
``gpu_serve_config`` adds it to the CPU config; ``scripts/serve_config.py`` renders the result
as ``serve_config.gpu.yaml``. Building the application itself needs vLLM (``.[gpu]``) on
the cluster; nothing here imports it.
"""

from __future__ import annotations

from typing import Any

from kitrade.config import Settings, env_var_name
from kitrade.errors import ConfigError

__all__ = [
    "LLM_APP_NAME",
    "LLM_ROUTE_PREFIX",
    "MAX_MODEL_LEN",
    "MEMORY_HEADROOM",
    "MODEL_SOURCE",
    "TENSOR_PARALLEL",
    "check_gpu_shares",
    "gpu_serve_config",
    "llm_app",
]

LLM_APP_NAME = "llm"
LLM_ROUTE_PREFIX = "/llm"
MODEL_SOURCE = "meta-llama/Llama-3.1-70B-Instruct"
TENSOR_PARALLEL = 4
MAX_MODEL_LEN = 8192
# vLLM pre-allocates gpu_memory_utilization x the GPU's memory whatever Ray
# schedules; Ray's fractional-GPU guide says to stay a little under the share.
MEMORY_HEADROOM = 0.05
MIN_FRACTION = 0.1


def llm_app(settings: Settings, tensor_parallel: int, model_source: str) -> dict[str, Any]:
    """The ``ray.serve.llm:build_openai_app`` application (its args: LLMServingArgs)."""
    share = settings.llm_gpu_fraction
    return {
        "name": LLM_APP_NAME,
        "route_prefix": LLM_ROUTE_PREFIX,
        "import_path": "ray.serve.llm:build_openai_app",
        "args": {
            "llm_configs": [
                {
                    "model_loading_config": {
                        "model_id": settings.llm_model,
                        "model_source": model_source,
                    },
                    # fixed replica count: the guide's advice for fractional GPUs
                    "deployment_config": {"num_replicas": 1},
                    "engine_kwargs": {
                        "tensor_parallel_size": tensor_parallel,
                        "gpu_memory_utilization": round(share - MEMORY_HEADROOM, 2),
                        "max_model_len": MAX_MODEL_LEN,
                    },
                    # one bundle per tensor-parallel worker, all on one node
                    "placement_group_config": {
                        "bundle_per_worker": {"GPU": share},
                        "strategy": "STRICT_PACK",
                    },
                    "runtime_env": {
                        "env_vars": {
                            # must equal the bundle's GPU share
                            "VLLM_RAY_PER_WORKER_GPUS": f"{share:g}",
                            # workers sharing a GPU contend for torch's compile cache
                            "VLLM_DISABLE_COMPILE_CACHE": "1",
                        }
                    },
                }
            ]
        },
    }


def check_gpu_shares(settings: Settings, tensor_parallel: int) -> None:
    """Refuse GPU shares that cannot work.

    Raises:
        ConfigError: a tensor-parallel size below 1, an LLM share below ``MIN_FRACTION``, or
            LLM and training shares that together exceed one GPU.
    """
    if tensor_parallel < 1:
        raise ConfigError(f"--tensor-parallel must be at least 1, got {tensor_parallel}")
    llm, train = settings.llm_gpu_fraction, settings.train_gpu_fraction
    if llm < MIN_FRACTION:
        raise ConfigError(
            f"{env_var_name('llm_gpu_fraction')}={llm:g} is below {MIN_FRACTION:g}: "
            "too small a GPU share for a vLLM worker"
        )
    if llm + train > 1 + 1e-9:
        raise ConfigError(
            f"{env_var_name('llm_gpu_fraction')}={llm:g} + "
            f"{env_var_name('train_gpu_fraction')}={train:g} exceed one GPU; "
            "lower one of them so a training task fits beside the LLM"
        )


def gpu_serve_config(
    settings: Settings,
    base: dict[str, Any],
    tensor_parallel: int = TENSOR_PARALLEL,
    model_source: str = MODEL_SOURCE,
) -> dict[str, Any]:
    """The GPU Serve config: ``base`` (serve_config.yaml) plus the LLM application.

    Raises:
        ConfigError: the GPU shares do not fit one GPU, or the LLM's is too small.
    """
    check_gpu_shares(settings, tensor_parallel)
    conf = {key: value for key, value in base.items() if key != "applications"}
    port = int(base.get("http_options", {}).get("port", 8000))
    apps = []
    for app in base["applications"]:
        app = {**app, "args": dict(app.get("args") or {})}
        if app["import_path"] == "kitrade.deployments.gateway:build_app":
            app["args"]["env"] = {
                **app["args"].get("env", {}),
                env_var_name("llm_base_url"): f"http://127.0.0.1:{port}{LLM_ROUTE_PREFIX}/v1",
                env_var_name("llm_model"): settings.llm_model,
                env_var_name("train_gpu_fraction"): f"{settings.train_gpu_fraction:g}",
            }
        apps.append(app)
    apps.append(llm_app(settings, tensor_parallel, model_source))
    conf["applications"] = apps
    return conf
