"""serve_config.yaml and cluster.yaml stay valid and safe by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]


def test_serve_config_builds_the_app_with_typed_args():
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app

    conf = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert conf["http_options"]["host"] == "127.0.0.1" and conf["http_options"]["port"] == 3000
    app = conf["applications"][0]
    assert app["import_path"] == "kitrade.deployments.gateway:build_app"
    args = AppArgs(**app["args"])  # unknown keys would raise
    assert args.forecast_replicas == 2
    assert build_app(app["args"]) is not None


def test_app_args_refuse_unknown_keys():
    import pydantic
    import pytest

    from kitrade.deployments.common import AppArgs

    with pytest.raises(pydantic.ValidationError):
        AppArgs(forecast_replicaz=2)


def test_cluster_yaml_keeps_dashboard_on_localhost_and_installs_kitrade():
    conf = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = " ".join(conf["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert any("pip install -e ~/kitrade" in c for c in conf["setup_commands"])
    gpu = conf["available_node_types"]["gpu_worker"]["resources"]
    assert gpu["GPU"] >= 1


def test_cluster_yaml_starts_every_node_with_token_auth():
    conf = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    starts = [
        c
        for c in conf["head_start_ray_commands"] + conf["worker_start_ray_commands"]
        if "ray start" in c
    ]
    assert len(starts) == 2
    assert all(c.lstrip().startswith("RAY_AUTH_MODE=token ") for c in starts), starts
    assert "disabled" not in (ROOT / "cluster.yaml").read_text()
    # the workers get the head's token
    assert any(k.endswith(".ray/auth_token") for k in conf["file_mounts"])


# --- serve_config.gpu.yaml: Serve's schema, Ray's LLM models, the generator -------------

GPU_FILE = ROOT / "serve_config.gpu.yaml"
GENERATOR = ROOT / "scripts" / "serve_config.py"
LLM_IMPORT = "ray.serve.llm:build_openai_app"
KITRADE_IMPORT = "kitrade.deployments.gateway:build_app"


def _generator():
    """scripts/serve_config.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_config_script", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unknown_keys(model, data, where):
    """Keys of ``data`` that are no field of the pydantic ``model``, nested models included.

    Serve's schemas ignore unknown keys (a typo would silently fall back to a
    default), so the walk refuses them, using the schemas' own field lists.
    """
    import typing

    import pydantic

    bad = []
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        if info.alias:
            fields[info.alias] = info
    for key, value in data.items():
        if key not in fields:
            bad.append(f"{where}.{key}")
            continue
        ann = fields[key].annotation
        args = typing.get_args(ann) or (ann,)
        for sub in [a for a in args if isinstance(a, type)] + [
            b for a in args for b in typing.get_args(a) if isinstance(b, type)
        ]:
            if not issubclass(sub, pydantic.BaseModel):
                continue
            if isinstance(value, dict):
                bad += _unknown_keys(sub, value, f"{where}.{key}")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        bad += _unknown_keys(sub, item, f"{where}.{key}[{i}]")
    return bad


def _serving_args_fields():
    """Field names of Ray's LLMServingArgs (``build_openai_app``'s argument model).

    Importing it needs vLLM, which this CPU environment lacks, so the names are
    read from the installed Ray's source instead.
    """
    import ast

    import ray

    path = Path(ray.__file__).parent / "llm/_internal/serve/core/ingress/builder.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "LLMServingArgs":
            return {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    raise AssertionError(f"LLMServingArgs not found in {path}")


def _validate_llm_args(args):
    """The LLM app's args through Ray's own LLM models (those importable without vLLM)."""
    from ray.llm._internal.common.placement import PlacementGroupConfig
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    from ray.serve.schema import DeploymentSchema

    unknown = set(args) - _serving_args_fields()
    if unknown:
        raise ValueError(f"not LLMServingArgs fields: {sorted(unknown)}")
    if not args.get("llm_configs"):
        raise ValueError("llm_configs is empty")
    configs = []
    for raw in args["llm_configs"]:
        config = LLMConfig.model_validate(raw)  # extra="forbid"; model_loading_config too
        # LLMConfig keeps deployment_config a dict checked by a model that ignores
        # unknown keys; Serve's deployment schema lists the real option names.
        bad = _unknown_keys(DeploymentSchema, config.deployment_config, "deployment_config")
        if bad:
            raise ValueError(f"unknown deployment options: {bad}")
        if config.placement_group_config is not None:
            # the model VLLMEngineConfig validates it with (that one needs vLLM)
            PlacementGroupConfig(**config.placement_group_config)
        configs.append(config)
    return configs


def validate_serve_file(conf):
    """A Serve config file the way `serve deploy` and the apps' builders read it."""
    from ray.serve.schema import ServeDeploySchema

    from kitrade.deployments.common import AppArgs

    ServeDeploySchema.model_validate(conf)
    bad = _unknown_keys(ServeDeploySchema, conf, "config")
    if bad:
        raise ValueError(f"unknown Serve config keys: {bad}")
    llm = []
    for app in conf["applications"]:
        if app["import_path"] == KITRADE_IMPORT:
            AppArgs(**app.get("args", {}))
        elif app["import_path"] == LLM_IMPORT:
            llm += _validate_llm_args(app["args"])
        else:
            raise ValueError(f"unexpected application {app['import_path']}")
    return llm


def _clean_env():
    """This process's environment without kitrade's settings (their defaults apply)."""
    import os

    prefixes = ("KITRADE_", "NHITS_", "TIMESCALE_", "EASYINSIGHT_", "OLLAMA_", "CHROMA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run_generator(tmp_path, **env):
    import subprocess
    import sys

    return subprocess.run(  # noqa: RUF100, S603 - our own script, fixed arguments
        [sys.executable, str(GENERATOR), "--gpu"],
        cwd=tmp_path,  # no .env file there
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_both_serve_files_pass_serves_schema():
    cpu = validate_serve_file(yaml.safe_load((ROOT / "serve_config.yaml").read_text()))
    assert cpu == []  # the laptop file has no LLM application
    gpu = validate_serve_file(yaml.safe_load(GPU_FILE.read_text()))
    assert [c.model_id for c in gpu] == ["llama3.1:70b"]


def test_committed_gpu_file_is_the_generators_output_for_the_defaults(tmp_path):
    out = _run_generator(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == GPU_FILE.read_text(), (
        "serve_config.gpu.yaml is stale: "
        "python scripts/serve_config.py --gpu > serve_config.gpu.yaml"
    )


def test_gpu_file_shares_one_gpu_between_vllm_and_training():
    from kitrade.config import Settings

    defaults = Settings.model_fields
    share = defaults["llm_gpu_fraction"].default
    train = defaults["train_gpu_fraction"].default
    conf = yaml.safe_load(GPU_FILE.read_text())
    kitrade, llm = conf["applications"]
    (config,) = llm["args"]["llm_configs"]
    pg = config["placement_group_config"]
    assert pg == {"bundle_per_worker": {"GPU": share}, "strategy": "STRICT_PACK"}
    assert float(config["runtime_env"]["env_vars"]["VLLM_RAY_PER_WORKER_GPUS"]) == share
    assert config["engine_kwargs"]["gpu_memory_utilization"] < share  # headroom
    assert share + train <= 1
    # the kitrade app is serve_config.yaml's, with the analysis pointed at the LLM app
    base = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    env = kitrade["args"].pop("env")
    assert kitrade == base
    port = conf["http_options"]["port"]
    assert env["KITRADE_LLM_BASE_URL"] == f"http://127.0.0.1:{port}{llm['route_prefix']}/v1"
    assert env["KITRADE_LLM_MODEL"] == config["model_loading_config"]["model_id"]
    assert float(env["KITRADE_TRAIN_GPU_FRACTION"]) == train


def test_generator_follows_the_llm_gpu_fraction_setting():
    from kitrade.config import Settings

    gen = _generator()
    text = gen.render(Settings(llm_gpu_fraction=0.5, train_gpu_fraction=0.3), tensor_parallel=2)
    conf = yaml.safe_load(text)
    (config,) = validate_serve_file(conf)
    assert config.placement_group_config["bundle_per_worker"]["GPU"] == 0.5
    assert config.runtime_env["env_vars"]["VLLM_RAY_PER_WORKER_GPUS"] == "0.5"
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["gpu_memory_utilization"] == 0.45
    assert conf["applications"][0]["args"]["env"]["KITRADE_TRAIN_GPU_FRACTION"] == "0.3"


def test_generator_reads_the_environment_and_refuses_an_overbooked_gpu(tmp_path):
    out = _run_generator(tmp_path, KITRADE_LLM_GPU_FRACTION="0.7")
    assert out.returncode == 2 and out.stdout == ""
    assert "KITRADE_LLM_GPU_FRACTION=0.7" in out.stderr
    assert "KITRADE_TRAIN_GPU_FRACTION=0.4" in out.stderr
    out = _run_generator(tmp_path, KITRADE_LLM_GPU_FRACTION="0.5", KITRADE_TRAIN_GPU_FRACTION="0.5")
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["applications"][1]["args"]["llm_configs"][0][
        "placement_group_config"
    ]["bundle_per_worker"] == {"GPU": 0.5}
    out = _run_generator(tmp_path, KITRADE_LLM_GPU_FRACTION="lots")
    assert out.returncode == 2 and "KITRADE_LLM_GPU_FRACTION" in out.stderr, out.stderr


def _rename(path, new):
    def mutate(conf):
        *parents, last = path
        node = conf
        for key in parents:
            node = node[key]
        node[new] = node.pop(last)

    return mutate


def _set(path, value):
    def mutate(conf):
        *parents, last = path
        node = conf
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


_LLM = ("applications", 1, "args", "llm_configs", 0)
_MUTATIONS = {
    "top-level key": _rename(("http_options",), "http_option"),
    "http option": _rename(("http_options", "port"), "prot"),
    "application key": _rename(("applications", 1, "route_prefix"), "route_prefx"),
    "kitrade app arg": _rename(
        ("applications", 0, "args", "forecast_replicas"), "forecast_replica"
    ),
    "build_openai_app arg": _rename(("applications", 1, "args", "llm_configs"), "llm_config"),
    "LLMConfig key": _rename((*_LLM, "placement_group_config"), "placement_groups_config"),
    "model loading key": _rename((*_LLM, "model_loading_config", "model_id"), "model_idd"),
    "deployment option": _rename((*_LLM, "deployment_config", "num_replicas"), "num_replica"),
    "placement group key": _rename(
        (*_LLM, "placement_group_config", "bundle_per_worker"), "bundle"
    ),
    "placement strategy": _set((*_LLM, "placement_group_config", "strategy"), "STRICT-PACK"),
    "negative GPU share": _set((*_LLM, "placement_group_config", "bundle_per_worker"), {"GPU": -1}),
}


@pytest.mark.parametrize("name", sorted(_MUTATIONS))
def test_a_typo_in_the_gpu_file_fails_validation(name):
    conf = yaml.safe_load(GPU_FILE.read_text())
    _MUTATIONS[name](conf)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        validate_serve_file(conf)


def test_gpu_kitrade_app_builds():
    from kitrade.deployments.gateway import build_app

    app = yaml.safe_load(GPU_FILE.read_text())["applications"][0]
    assert build_app(app["args"]) is not None


def test_llm_args_pass_vllm_engine_config_where_vllm_is_installed():
    """Full check of engine_kwargs (vLLM's own argument names): GPU nodes only."""
    pytest.importorskip("vllm")
    from ray.serve.llm import LLMServingArgs

    args = yaml.safe_load(GPU_FILE.read_text())["applications"][1]["args"]
    for config in LLMServingArgs.model_validate(args).llm_configs:
        engine = config.get_engine_config()  # refuses unknown engine arguments
        assert engine.placement_strategy == "STRICT_PACK"
        assert len(engine.placement_bundles) == engine.num_devices


def test_laptop_file_points_to_the_gpu_file_and_cluster_yaml_says_which_is_which():
    cpu = (ROOT / "serve_config.yaml").read_text()
    assert "build_openai_app" not in cpu and "serve_config.gpu.yaml" in cpu
    cluster = (ROOT / "cluster.yaml").read_text()
    assert "serve deploy serve_config.gpu.yaml" in cluster
    assert "serve_config.yaml" in cluster


def test_cluster_yaml_passes_the_cluster_launchers_schema_and_fits_the_llm():
    import json

    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    conf = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(conf, schema)
    # the LLM's STRICT_PACK group needs tensor_parallel_size GPUs on one node, with vLLM there
    llm = yaml.safe_load(GPU_FILE.read_text())["applications"][1]["args"]["llm_configs"][0]
    tp = llm["engine_kwargs"]["tensor_parallel_size"]
    node = conf["available_node_types"]["llm_worker"]
    assert node["resources"]["GPU"] >= tp
    assert any("kitrade[gpu]" in c for c in node["worker_setup_commands"])
    assert any("python3 -m venv" in c for c in node["worker_setup_commands"])
    conf["available_node_types"]["llm_worker"]["worker_setup_command"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(conf, schema)


def test_the_split_lands_on_each_gpu_in_rays_scheduler():
    """Ray's own scheduler, 4 logical GPUs: the LLM group's placement group as the GPU
    file asks for it, then one training task per GPU fits beside it, and not one more."""
    import time

    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from kitrade.cluster import connect
    from kitrade.config import Settings
    from kitrade.training.tasks import task_resources

    kitrade, llm = yaml.safe_load(GPU_FILE.read_text())["applications"]
    (config,) = llm["args"]["llm_configs"]
    pg_conf, tp = config["placement_group_config"], config["engine_kwargs"]["tensor_parallel_size"]
    # as ray.serve.llm builds it: one bundle per worker, the replica's CPU in the first
    bundles = [dict(pg_conf["bundle_per_worker"]) for _ in range(tp)]
    bundles[0]["CPU"] = bundles[0].get("CPU", 0) + 1
    settings = Settings(
        nhits_use_gpu=True,
        train_gpu_fraction=float(kitrade["args"]["env"]["KITRADE_TRAIN_GPU_FRACTION"]),
    )

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self):
            self.ids, self.open = [], False

        def arrive(self, ids):
            self.ids.append(ids)

        def arrived(self):
            return self.ids

        def release(self):
            self.open = True

        def is_open(self):
            return self.open

    def hold(gate):
        gate.arrive.remote([str(i) for i in ray.get_gpu_ids()])
        while not ray.get(gate.is_open.remote()):
            time.sleep(0.05)

    def arrived(gate, n, wait_s):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            ids = ray.get(gate.arrived.remote())
            if len(ids) >= n:
                return ids
            time.sleep(0.1)
        return ray.get(gate.arrived.remote())

    connect(num_cpus=tp + 4, num_gpus=tp)
    try:
        pg = placement_group(bundles, strategy=pg_conf["strategy"])
        ray.get(pg.ready(), timeout=60)
        gate = Gate.remote()
        train = ray.remote(**task_resources(settings))(hold)
        refs = [train.remote(gate) for _ in range(tp)]
        ids = arrived(gate, tp, 60)
        assert sorted(i for task in ids for i in task) == [str(g) for g in range(tp)], ids
        extra = train.remote(gate)  # every GPU now holds 0.6 + 0.4
        # Ray's own accounting says no training task's GPU share is left (waited for while
        # its view of the running tasks catches up): the extra one cannot start, no window
        deadline = time.monotonic() + 60
        while ray.available_resources().get("GPU", 0.0) >= settings.train_gpu_fraction:
            assert time.monotonic() < deadline, ray.available_resources()
            time.sleep(0.1)
        assert len(ray.get(gate.arrived.remote())) == tp
        ray.get(gate.release.remote())
        ray.get([*refs, extra], timeout=60)
        remove_placement_group(pg)
    finally:
        ray.shutdown()
