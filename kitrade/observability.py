"""Application metrics on Ray's Prometheus endpoint, beside Ray's and Serve's own.

Every metric kitrade exports is defined here, once (``METRICS``), and made with
``ray.util.metrics`` on first use inside a Ray process (a Serve replica, a task,
an actor or a connected driver). Outside Ray a call records nothing: the CLI's
light commands never import Ray for a metric. A failure to record never reaches
the request that recorded it.

Ray exports them (prefixed ``ray_``) from each node's metrics agent at
``http://<node>:<metrics export port>/metrics``; see the README, "Observability".
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "METRICS",
    "count",
    "fallback_kind",
    "forecast_served",
    "llm_call",
    "observe",
    "set_gauge",
    "sync_lag",
    "training_finished",
]

_log = logging.getLogger(__name__)

_LATENCY_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
_DURATION_S = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0]

#: name -> (kind, description, tag keys, histogram boundaries)
METRICS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "kitrade_forecast_requests": (
        "counter",
        "Forecasts answered, by symbol and cache outcome (gateway = the gateway's hot cache, "
        "hit = the forecast replica's cache, miss = a forward pass).",
        ("symbol", "cache"),
        None,
    ),
    "kitrade_forecast_latency_seconds": (
        "histogram",
        "Time to answer a forecast in the gateway, by symbol and cache outcome.",
        ("symbol", "cache"),
        _LATENCY_S,
    ),
    "kitrade_forecast_batch_size": (
        "histogram",
        "Requests in each batch the forecast deployment's @serve.batch formed.",
        (),
        [1, 2, 4, 8, 16, 32, 64],
    ),
    "kitrade_forecast_pass_series": (
        "histogram",
        "Series in each forward pass of the forecast engine: the cache misses of one batch "
        "that share a model (1 with a model per symbol, up to the batch with a shared one).",
        (),
        [1, 2, 4, 8, 16, 32, 64],
    ),
    "kitrade_model_version_served": (
        "gauge",
        "1 for the model version a forecast replica serves for a symbol, 0 once replaced.",
        ("symbol", "version"),
        None,
    ),
    "kitrade_training_runs": (
        "counter",
        "Training runs finished, by outcome (done, partial, failed).",
        ("outcome",),
        None,
    ),
    "kitrade_training_run_seconds": (
        "histogram",
        "Duration of a training run, by outcome.",
        ("outcome",),
        _DURATION_S,
    ),
    "kitrade_training_symbols": (
        "counter",
        "Symbols of finished runs, by outcome (done, failed, skipped).",
        ("outcome",),
        None,
    ),
    "kitrade_llm_calls": (
        "counter",
        "LLM calls by backend and outcome (ok, fallback).",
        ("backend", "outcome"),
        None,
    ),
    "kitrade_llm_latency_seconds": (
        "histogram",
        "Time of an LLM call (answer or stream), by backend.",
        ("backend",),
        _LATENCY_S,
    ),
    "kitrade_llm_fallbacks": (
        "counter",
        "Answers that fell back to the offline analyst, by reason "
        "(timeout, http_status, invalid_answer, unavailable).",
        ("backend", "reason"),
        None,
    ),
    "kitrade_sync_lag_seconds": (
        "gauge",
        "Seconds between now and the last stored bar of a symbol, when last looked at.",
        ("symbol",),
        None,
    ),
    "kitrade_guard_refusals": (
        "counter",
        "Requests the gateway's guard refused: rate_limited (429) or too_large (413).",
        ("reason", "method"),
        None,
    ),
}

_made: dict[str, Any] = {}
_lock = threading.Lock()


def _metric(name: str) -> Any:
    """The Ray metric ``name``, made on first use; None outside a Ray process."""
    ray = sys.modules.get("ray")  # not imported: not a Ray process, nothing to export
    if ray is None or not ray.is_initialized():
        return None
    with _lock:
        if name not in _made:
            from ray.util import metrics  # Ray is loaded already (see above)

            kind, description, tags, bounds = METRICS[name]
            if kind == "counter":
                _made[name] = metrics.Counter(name, description, tag_keys=tags)
            elif kind == "gauge":
                _made[name] = metrics.Gauge(name, description, tag_keys=tags)
            else:
                _made[name] = metrics.Histogram(name, description, bounds or [], tag_keys=tags)
        return _made[name]


def _record(name: str, method: str, value: float, tags: dict[str, Any]) -> None:
    try:
        metric = _metric(name)
        if metric is not None:
            getattr(metric, method)(value, tags={k: str(v) for k, v in tags.items()})
    except Exception as exc:  # noqa: BLE001 - a metric never fails the request it counts
        _log.debug("metric %s not recorded: %s", name, exc)


def count(name: str, value: float = 1.0, **tags: Any) -> None:
    """Add ``value`` to counter ``name``."""
    _record(name, "inc", value, tags)


def observe(name: str, value: float, **tags: Any) -> None:
    """Record ``value`` in histogram ``name``."""
    _record(name, "observe", value, tags)


def set_gauge(name: str, value: float, **tags: Any) -> None:
    """Set gauge ``name`` to ``value``."""
    _record(name, "set", value, tags)


# --------------------------------------------------------------- the call sites' helpers
def forecast_served(symbol: str, cache: str, started: float) -> None:
    """A forecast answered with ``cache`` outcome, ``started`` at ``time.monotonic()``."""
    count("kitrade_forecast_requests", symbol=symbol, cache=cache)
    observe(
        "kitrade_forecast_latency_seconds", time.monotonic() - started, symbol=symbol, cache=cache
    )


def training_finished(report: Any) -> None:
    """A ``TrainAllReport``: the run's outcome and duration, and its symbols' outcomes."""
    count("kitrade_training_runs", outcome=report.status)
    observe("kitrade_training_run_seconds", report.seconds, outcome=report.status)
    for result in report.results:
        count("kitrade_training_symbols", outcome=result.status)


def fallback_kind(reason: str) -> str:
    """A fallback reason's kind, a small fixed set fit for a metric tag."""
    text = reason.lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "http " in text or "status" in text:
        return "http_status"
    if "invalid" in text or "json" in text or "expected" in text:
        return "invalid_answer"
    return "unavailable"


def llm_call(backend: str, started: float, fallback_reason: str | None) -> None:
    """An LLM call of ``backend`` that ended in an answer or (``fallback_reason``) a fallback."""
    outcome = "ok" if fallback_reason is None else "fallback"
    count("kitrade_llm_calls", backend=backend, outcome=outcome)
    observe("kitrade_llm_latency_seconds", time.monotonic() - started, backend=backend)
    if fallback_reason is not None:
        count("kitrade_llm_fallbacks", backend=backend, reason=fallback_kind(fallback_reason))


def sync_lag(states: Iterable[Any]) -> None:
    """Per-symbol lag from ``SyncState`` rows (their ``last_bar``)."""
    now = datetime.now(UTC)
    for s in states:
        if s.last_bar is not None:
            set_gauge(
                "kitrade_sync_lag_seconds", (now - s.last_bar).total_seconds(), symbol=s.symbol
            )
