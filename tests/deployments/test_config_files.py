"""serve_config.yaml and cluster.yaml stay valid and safe by default."""

from __future__ import annotations

from pathlib import Path

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
