"""The metric definitions: outside Ray nothing is recorded and nothing fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kitrade import observability


def test_recording_outside_ray_is_a_no_op_that_never_imports_ray():
    code = (
        "import sys, time\n"
        "from kitrade import observability as o\n"
        "o.count('kitrade_training_runs', outcome='done')\n"
        "o.forecast_served('EURUSD', 'miss', time.monotonic())\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("openai: http://x: timed out after 60 s", "timeout"),
        ("ollama: HTTP 500 from http://x", "http_status"),
        ("openai: invalid answer: expected JSON", "invalid_answer"),
        ("openai: connection refused", "unavailable"),
    ],
)
def test_fallback_reasons_become_a_small_set_of_tags(reason, kind):
    assert observability.fallback_kind(reason) == kind


def test_every_metric_is_defined_once_with_known_kind():
    kinds = {kind for kind, *_ in observability.METRICS.values()}
    assert kinds <= {"counter", "gauge", "histogram"}
    assert all(name.startswith("kitrade_") for name in observability.METRICS)
