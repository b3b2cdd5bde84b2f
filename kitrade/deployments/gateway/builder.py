"""``build_app``: the kitrade Serve application, referenced from ``serve_config.yaml``."""

from __future__ import annotations

from typing import Any

from ray import serve

from kitrade.deployments.common import AppArgs

__all__ = ["build_app"]


def _deployment(cls: type, **options: Any) -> Any:
    """``cls`` as a Serve deployment with ``options`` (the typed form of ``serve.deployment``)."""
    return serve.deployment(**options)(cls)


def build_app(args: dict[str, Any] | AppArgs) -> Any:
    """The kitrade Serve application (``kitrade.deployments.gateway:build_app``)."""
    from kitrade.deployments.analysis import AnalysisDeployment
    from kitrade.deployments.data import DataDeployment
    from kitrade.deployments.forecast import ForecastDeployment
    from kitrade.deployments.gateway.deployment import Gateway

    a = args if isinstance(args, AppArgs) else AppArgs(**args)
    checks: dict[str, Any] = {
        "health_check_period_s": a.health_check_period_s,
        "health_check_timeout_s": a.health_check_timeout_s,
    }
    forecast = _deployment(
        ForecastDeployment,
        name="forecast",
        **checks,
        num_replicas=a.forecast_replicas,
        max_ongoing_requests=a.forecast_max_ongoing_requests,
        max_queued_requests=a.forecast_max_queued_requests,
        ray_actor_options={"num_cpus": 0.5, "num_gpus": a.forecast_num_gpus},
        user_config={"model_refresh_s": a.model_refresh_s},
    ).bind(a)
    data = _deployment(
        DataDeployment,
        name="data",
        **checks,
        num_replicas=a.data_replicas,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(a)
    analysis = _deployment(
        AnalysisDeployment,
        name="analysis",
        **checks,
        num_replicas=1,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(forecast, a)
    return _deployment(
        Gateway,
        name="gateway",
        **checks,
        num_replicas=a.gateway_replicas,
        max_ongoing_requests=a.gateway_max_ongoing_requests,
        max_queued_requests=a.gateway_max_queued_requests,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(forecast, data, analysis, a)
