"""Every setting does something: each field of ``Settings`` and ``AppArgs`` is read somewhere.

A field is read when some module of ``kitrade/`` accesses ``<something>.<field>`` (an
attribute load, found with ``ast``; the field's own definition is not one). A setting nobody reads is a promise the
platform does not keep: wire it or remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kitrade.config import Settings
from kitrade.deployments.common import AppArgs

ROOT = Path(__file__).resolve().parents[1] / "kitrade"


def _attribute_reads() -> dict[Path, set[str]]:
    reads: dict[Path, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = reads.setdefault(path, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return reads


def _unread(model: type, defined_in: Path) -> list[str]:
    """Fields of ``model`` that no module reads as an attribute. A field's definition is an
    annotated name in the class body, not an attribute read, so the defining module counts
    too (``load_settings`` reading ``settings.log_level``)."""
    reads = _attribute_reads()
    if defined_in not in reads:
        reads[defined_in] = {
            n.attr
            for n in ast.walk(ast.parse(defined_in.read_text()))
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
        }
    used = set().union(*reads.values())
    return [f for f in model.model_fields if f not in used]


@pytest.mark.parametrize(
    ("model", "module"),
    [(Settings, ROOT / "config.py"), (AppArgs, ROOT / "deployments" / "common.py")],
    ids=["Settings", "AppArgs"],
)
def test_every_field_is_read_by_some_code_path(model, module):
    assert _unread(model, module) == []


def test_the_check_finds_an_unread_field(tmp_path):
    """The detector itself: a model field no module reads is reported."""
    from pydantic import BaseModel

    class Probe(BaseModel):
        host: str = ""  # read all over kitrade
        never_read_anywhere_xyz: int = 0

    probe = tmp_path / "probe.py"
    probe.write_text("class Probe:\n    never_read_anywhere_xyz = 0\n")
    assert _unread(Probe, probe) == ["never_read_anywhere_xyz"]


def test_log_level_is_applied_and_events_are_one_key_value_line(monkeypatch, capsys):
    import logging

    from kitrade.config import load_settings
    from kitrade.logs import log_event

    monkeypatch.setenv("KITRADE_LOG_LEVEL", "WARNING")
    load_settings(_env_file=None)
    log = logging.getLogger("kitrade.probe")
    log_event(log, "hidden", symbol="EURUSD")
    log_event(log, "shown", logging.WARNING, symbol="EURUSD", reason="two words")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "level=WARNING logger=kitrade.probe event=shown symbol=EURUSD" in err[0]
    assert 'reason="two words"' in err[0]
    monkeypatch.setenv("KITRADE_LOG_LEVEL", "DEBUG")
    load_settings(_env_file=None)
    assert logging.getLogger("kitrade").getEffectiveLevel() == logging.DEBUG


def test_llm_gpu_fraction_sizes_the_vllm_app():
    from kitrade.deployments.llm import MEMORY_HEADROOM, llm_app

    app = llm_app(Settings(_env_file=None, llm_gpu_fraction=0.55), 2, "some/model")
    cfg = app["args"]["llm_configs"][0]
    assert cfg["engine_kwargs"]["gpu_memory_utilization"] == round(0.55 - MEMORY_HEADROOM, 2)
    assert cfg["engine_kwargs"]["tensor_parallel_size"] == 2
    assert cfg["placement_group_config"]["bundle_per_worker"] == {"GPU": 0.55}
    assert cfg["runtime_env"]["env_vars"]["VLLM_RAY_PER_WORKER_GPUS"] == "0.55"
