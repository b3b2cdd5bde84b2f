"""Run the fault, load and bad-input suites and print one table.

Every suite records its rows through the ``record`` fixture of
``tests/conftest.py`` (case, survived, requests lost, recovery seconds); this
script runs them with ``KITRADE_RELIABILITY_OUT`` pointing at a scratch file,
then prints the table. A suite that fails records no row for its case, and the
failed tests are listed under the table, so a broken case cannot pass silently;
a skipped test appears as a row that says it was skipped and why. Every figure
in a row is measured by its test, none is written into it.

Usage:
    python scripts/reliability_report.py [--json PATH] [pytest args…]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SUITES = [
    "tests/reliability",
    "tests/data/test_sync_kill.py",
    "tests/training/test_train_ray.py::test_killed_training_worker_is_retried_and_progress_survives_actor_kill",
    "tests/deployments/test_serving.py",
    "tests/deployments/test_analysis_api.py::test_knowledge_from_url_refuses_internal_targets",
    "tests/deployments/test_analysis_api.py::test_knowledge_routes_and_planted_injection",
    "tests/analysis/test_injection.py",
]


def _junit(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Failed test ids, and one row per skipped test, from pytest's JUnit file."""
    import xml.etree.ElementTree as ET

    failed: list[str] = []
    skipped: list[dict[str, Any]] = []
    if not path.exists():
        return failed, skipped
    tree = ET.parse(path)  # noqa: S314 - our own pytest's JUnit file, not outside input
    for case in tree.getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        skip = case.find("skipped")
        if skip is not None:
            why = (skip.get("message") or "").strip().splitlines()[:1]
            skipped.append(
                {
                    "case": f"SKIPPED {name}: {why[0] if why else 'no reason given'}",
                    "survived": None,
                    "requests_lost": None,
                    "recovery_s": None,
                }
            )
    return failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args, extra = parser.parse_known_args(argv)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="kitrade-reliability-") as tmp:
        out = Path(tmp) / "rows.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = dict(os.environ, KITRADE_RELIABILITY_OUT=str(out))
        # two windows of this many requests each; `make test` runs 2000
        env.setdefault("KITRADE_SATURATION_REQUESTS", "6000")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:warnings",
                f"--junitxml={junit}",
                *SUITES,
                *extra,
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        failed, skipped = _junit(junit)
    rows += skipped
    width = max([len(r["case"]) for r in rows] + [30])
    print(f"{'fault or attack':<{width}}  survived  requests lost  recovery (s)")
    for r in rows:
        rec = "-" if r["recovery_s"] is None else f"{r['recovery_s']:.2f}"
        lost = "-" if r["requests_lost"] is None else r["requests_lost"]
        survived = {True: "yes", False: "NO", None: "skipped"}[r["survived"]]
        print(f"{r['case']:<{width}}  {survived:<8}  {lost:>13}  {rec:>12}")
    for name in failed:
        print(f"FAILED (no row): {name}")
    summary = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    print("pytest:", summary[0] if summary else proc.stderr.strip()[-500:])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if proc.returncode == 0 and all(r["survived"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
