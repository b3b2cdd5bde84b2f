"""``kitrade train --scope`` as a user runs it: a subprocess on the sample data."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import platform_env, run, stop_platform

pytestmark = pytest.mark.slow


def test_train_scope_refuses_an_unknown_scope_and_trains_shared_on_the_sample_data(tmp_path):
    env = platform_env(tmp_path)
    bad = run(env, "train", "--scope", "global")
    assert bad.returncode == 2, bad.stderr
    assert "expected symbol, shared or both" in bad.stderr
    try:
        assert run(env, "sync", timeout=300).returncode == 0
        env["COLUMNS"] = "250"
        done = run(env, "train", "--scope", "shared", "--max-steps", "5", timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # the sample symbols are of three timeframes: none shares, each trains its own model
        for symbol in ("BTCUSD", "EURUSD", "GOOG"):
            assert symbol in done.stdout
        assert "first version" in done.stdout and "run run-" in done.stdout
    finally:
        stop_platform(env, timeout=120)  # the database this run started (Ray: its own only)
