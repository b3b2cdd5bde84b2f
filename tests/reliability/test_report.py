"""The reliability report's reading of pytest's JUnit file: failures listed, skips as rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.reliability.test_faults" name="test_ok" time="1.0"/>
<testcase classname="tests.reliability.test_faults" name="test_broken" time="1.0">
  <failure message="boom">trace</failure></testcase>
<testcase classname="tests.reliability.test_gpu" name="test_needs_gpu" time="0.0">
  <skipped type="pytest.skip" message="no GPU on this machine">skip</skipped></testcase>
</testsuite></testsuites>
"""


def _report_module():
    path = Path(__file__).parents[2] / "scripts" / "reliability_report.py"
    spec = importlib.util.spec_from_file_location("reliability_report", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_skipped_case_is_a_row_that_says_so_and_a_failure_is_listed(tmp_path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    failed, skipped = _report_module()._junit(junit)
    assert failed == ["tests.reliability.test_faults::test_broken"]
    assert skipped == [
        {
            "case": "SKIPPED tests.reliability.test_gpu::test_needs_gpu: no GPU on this machine",
            "survived": None,
            "requests_lost": None,
            "recovery_s": None,
        }
    ]
    assert _report_module()._junit(tmp_path / "missing.xml") == ([], [])
