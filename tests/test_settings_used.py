"""Every setting does something: each field of ``Settings`` and ``AppArgs`` is read somewhere.

A field is read when some module of ``kitrade/`` loads it from the settings object itself
(found with ``ast``): ``settings.<field>``, ``s.<field>``, ``self.settings.<field>``,
``self._settings.<field>`` or ``getattr(settings, "<field>")`` for ``Settings``;
``args.<field>``, ``a.<field>`` or ``self.args.<field>`` for ``AppArgs``. An attribute of
the same name on something else (``url.port``, ``spec.source``) is not a read. A property
of the model counts the fields it reads through ``self`` when the property itself is read
on the settings object (``settings.resolved_models_dir`` reads ``models_dir``). A setting
nobody reads is a promise the platform does not keep: wire it or remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kitrade.config import Settings
from kitrade.deployments.common import AppArgs

ROOT = Path(__file__).resolve().parents[1] / "kitrade"
# The names a settings object goes by in kitrade, per model.
RECEIVERS = {"Settings": {"settings", "s"}, "AppArgs": {"args", "a"}}


def _is_receiver(node: ast.expr, names: set[str]) -> bool:
    """``node`` is the settings object: a name in ``names`` or ``<anything>.<name>`` /
    ``<anything>._<name>`` (``self._settings``)."""
    if isinstance(node, ast.Name):
        return node.id in names
    return isinstance(node, ast.Attribute) and node.attr.lstrip("_") in names


def _reads_on(tree: ast.AST, names: set[str]) -> set[str]:
    """Attribute names loaded from the settings object in ``tree``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and _is_receiver(node.value, names)
        ):
            found.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and _is_receiver(node.args[0], names)
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            found.add(node.args[1].value)
    return found


def _members_reading_self(model: str, defined_in: Path) -> dict[str, set[str]]:
    """Each method or property of class ``model`` -> the attributes it reads on ``self``."""
    tree = ast.parse(defined_in.read_text(), filename=str(defined_in))
    members: dict[str, set[str]] = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and cls.name == model:
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    members[fn.name] = _reads_on(fn, {"self"})
    return members


def _unread(model: type, defined_in: Path, root: Path = ROOT) -> list[str]:
    """Fields of ``model`` that no module under ``root`` reads on a settings object."""
    names = RECEIVERS.get(model.__name__, {"settings", "s"})
    used: set[str] = set()
    for path in [*root.rglob("*.py"), defined_in]:
        used |= _reads_on(ast.parse(path.read_text(), filename=str(path)), names)
    members = _members_reading_self(model.__name__, defined_in)
    for member in used & set(members):  # a property read on settings reads its fields
        used |= members[member]
    return [f for f in model.model_fields if f not in used]


@pytest.mark.parametrize(
    ("model", "module"),
    [(Settings, ROOT / "config.py"), (AppArgs, ROOT / "deployments" / "common.py")],
    ids=["Settings", "AppArgs"],
)
def test_every_field_is_read_by_some_code_path(model, module):
    assert _unread(model, module) == []


def test_the_check_finds_an_unread_field(tmp_path):
    """The detector itself: a field read only as an attribute of something else (``url.scheme``
    in kitrade) is reported; reads on the settings object, through ``getattr``
    and through a property of the model that is itself read count."""
    from pydantic import BaseModel

    class Settings(BaseModel):  # the name picks the receivers ``settings`` and ``s``
        scheme: str = ""
        port: int = 0
        models_dir: str = ""
        by_getattr: int = 0
        never_read_anywhere_xyz: int = 0

    (tmp_path / "config.py").write_text(
        "class Settings:\n"
        "    @property\n"
        "    def resolved(self):\n"
        "        return self.models_dir\n"
        "    def unused(self):\n"
        "        return self.never_read_anywhere_xyz\n"
    )
    (tmp_path / "user.py").write_text(
        "def f(url, settings, s):\n"
        "    return url.scheme, settings.port, s.resolved, getattr(settings, 'by_getattr')\n"
    )
    assert _unread(Settings, tmp_path / "config.py", root=tmp_path) == [
        "scheme",
        "never_read_anywhere_xyz",
    ]
    assert "scheme" in _unread(Settings, tmp_path / "config.py")  # kitrade: url.scheme only


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
