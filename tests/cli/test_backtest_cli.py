"""``kitrade backtest`` as a user runs it: a real PostgreSQL, a local Ray cluster, tiny NHITS."""

from __future__ import annotations

import re

import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.symbols import create_symbol
from kitrade.schemas import SymbolIn
from tests.cli.test_cli import base_env, run
from tests.services.test_backtests import TINY, synthetic

#: the period: 2 folds over the last 68 of 260 hourly bars (192 bars before it to train on)
PERIOD = ("--from", "2024-01-09T00:00", "--folds", "2")
SPEC = ("--kind", "forecast_threshold", "--param", "enter=0.0005", "--param", "allow_short=true")
_OVERRIDES = [a for k, v in TINY.items() if k != "max_steps" for a in ("--model", f"{k}={v}")]
MODEL = (*_OVERRIDES, "--max-steps", str(TINY["max_steps"]))


@pytest.fixture(scope="module")
def env(module_settings, db, tmp_path_factory) -> dict[str, str]:
    """The CLI's environment on the module's database, with two synthetic H1 symbols."""
    with db.connection() as conn:
        for i, name in enumerate(("SYNA", "SYNB")):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=synthetic(260, i))
    env = base_env(tmp_path_factory.mktemp("cli-bt"))
    env.update(
        TIMESCALE_HOST="127.0.0.1",
        TIMESCALE_PORT=str(module_settings.timescale_port),
        TIMESCALE_DB=module_settings.timescale_db,
        TIMESCALE_USER="postgres",
    )
    env.pop("RAY_ADDRESS", None)  # a local cluster of the command's own
    return env


@pytest.mark.slow
def test_backtest_prints_metrics_beside_the_baselines_and_writes_an_offline_report(
    env, tmp_path
) -> None:
    report = tmp_path / "out" / "bt.html"
    done = run(
        env,
        "backtest",
        *SPEC,
        "--symbols",
        "SYNA,SYNB",
        "--timeframe",
        "H1",
        *PERIOD,
        *MODEL,
        "--commission",
        "0.0001",
        "--max-gross",
        "1",
        "--report",
        str(report),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    backtest_id = int(re.search(r"backtest (\d+) recorded", text).group(1))  # type: ignore[union-attr]
    for header in ("strategy", "buy & hold", "naive", "Sharpe", "max drawdown", "profit factor"):
        assert header in text, header
    assert "forecast quality" in text and "DM stat" in text
    assert "lag test" in text and "one bar late" in text
    assert "forecasts_unchanged_when_later_bars_change" in text and "every_decision_bar" in text
    assert re.search(r"forecast folds computed 4, reused 0", text), text[-2000:]
    page = report.read_text(encoding="utf-8")
    assert "fig-equity" in page and "fig-trades-SYNA" in page
    assert "<script src=" not in page  # plotly inlined: the report works offline

    listed = run(env, "backtests")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"\b{backtest_id}\b.*done", listed.stdout), listed.stdout
    shown = run(env, "backtest-show", str(backtest_id))
    assert shown.returncode == 0, shown.stderr
    assert "buy & hold" in shown.stdout and "look-ahead checks" in shown.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            (*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--commission", "-0.001"),
            2,
            "commission",
        ),
        ((*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--spread", "-1"), 2, "spread"),
        ((*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--max-gross", "0"), 2, "max_gross"),
        (("no-such-strategy",), 3, "no-such-strategy"),
        (("--kind", "nope", "--symbols", "SYNA", "--timeframe", "H1"), 2, "nope"),
        (
            (*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--from", "2030-01-01"),
            2,
            "period 2030-01-01 00:00:00+00:00 .. 2024-01-11 19:00:00+00:00 is outside the stored bars",
        ),
        (
            (*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--from", "2024-01-02"),
            2,
            "expected at least",
        ),
        (
            (
                *SPEC,
                "--symbols",
                "SYNA",
                "--timeframe",
                "H1",
                "--from",
                "2024-01-05",
                "--to",
                "2024-01-02",
            ),
            2,
            "start <= end",
        ),
        ((*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--from", "Jan 5"), 2, "ISO date"),
        ((*SPEC, "--symbols", "SYNA", "--timeframe", "H1", "--model", "mlp_units"), 2, "KEY=VALUE"),
        (("stored", *SPEC), 2, "not both"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(env, args, code, message) -> None:
    done = run(env, "backtest", *args)
    assert done.returncode == code, (done.stdout[-1500:], done.stderr[-1500:])
    assert message in done.stderr, done.stderr[-1500:]
    assert "Traceback" not in done.stderr


def test_show_of_an_unknown_backtest_is_not_found(env) -> None:
    done = run(env, "backtest-show", "999999")
    assert done.returncode == 3
    assert "999999" in done.stderr
