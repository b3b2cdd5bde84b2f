"""Rules of the package's shape, checked on the source with ``ast``.

- no module under ``kitrade/`` imports one that imports it back (all import
  statements count, those inside functions too);
- no function longer than 60 lines unless a ``# long:`` comment on its first
  lines says why;
- no SQL outside ``kitrade/data/`` and ``kitrade/training/registry.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kitrade"

#: Files still in violation that other work in flight is rewriting; each entry
#: names the rule it breaks. The coordinator empties this set after the merge.
_PENDING: set[tuple[str, str]] = set()

MAX_FUNCTION_LINES = 60
#: A function may run longer when one of its first lines carries this marker and a reason.
LONG_MARKER = re.compile(r"#\s*long:\s*\S")
#: Statements that read or write rows (migrations' DDL is not what the rule is about).
#: Case-sensitive: the code writes SQL keywords in capitals, prose does not.
SQL = re.compile(
    r"\bSELECT\b[\s\S]*?\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+[\s\S]*?\bSET\b|\bDELETE\s+FROM\b"
)
SQL_HOMES = ("kitrade/data/", "kitrade/training/registry.py")


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _pending(rule: str, path: Path) -> bool:
    return (rule, _rel(path)) in _PENDING


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` denotes (a name inside a module denotes the module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            targets = [f"{source}.{a.name}" for a in node.names] or [source]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def test_import_graph_finds_a_planted_cycle(tmp_path: Path) -> None:
    """The graph builder sees imports inside functions (so the cycle check can fail)."""
    (tmp_path / "a.py").write_text("def f():\n    from kitrade import b\n")
    modules = {"kitrade.a": tmp_path / "a.py", "kitrade.b": tmp_path / "b.py"}
    assert _imports("kitrade.a", modules["kitrade.a"], modules) == {"kitrade.b"}


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = _sources()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    cycles = sorted(
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph[b]
    )
    assert not cycles, "modules importing each other: " + ", ".join(cycles)


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= MAX_FUNCTION_LINES:
            continue
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        head = lines[first - 1 : node.body[0].lineno + 3]
        if not any(LONG_MARKER.search(line) for line in head):
            out.append(f"{_rel(path)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_runs_past_a_screen_without_saying_why() -> None:
    found = [
        f
        for path in _sources().values()
        if not _pending("long", path)
        for f in _long_functions(path)
    ]
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines without a '# long: <reason>' comment: "
        + "; ".join(found)
    )


def _sql_literals(path: Path) -> list[str]:
    return [
        f"{_rel(path)}:{node.lineno} {node.value.strip()[:50]!r}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


@pytest.mark.parametrize(
    ("text", "is_sql"),
    [
        ("SELECT id FROM t WHERE x = %s", True),
        ("INSERT INTO t (a) VALUES (%s)", True),
        ("UPDATE t SET a = 1", True),
        ("DELETE FROM t WHERE a = %s", True),
        ("SELECT 1", False),
        ("select a model from the list", False),
        ("CREATE TABLE t (a int)", False),
        ("update the settings", False),
    ],
)
def test_sql_pattern(text: str, is_sql: bool) -> None:
    assert bool(SQL.search(text)) is is_sql


def test_sql_lives_only_in_the_data_layer_and_the_registry() -> None:
    found = [
        f
        for path in _sources().values()
        if not _rel(path).startswith(SQL_HOMES) and not _pending("sql", path)
        for f in _sql_literals(path)
    ]
    assert not found, "SQL outside kitrade/data/ and the registry: " + "; ".join(found)


def test_pending_entries_are_still_in_violation() -> None:
    """An entry whose file was fixed must leave ``_PENDING`` (it would hide a regression)."""
    check = {"sql": _sql_literals, "long": _long_functions}
    stale = sorted(f"{rule} {rel}" for rule, rel in _PENDING if not check[rule](ROOT / rel))
    assert not stale, "fixed, remove from _PENDING: " + ", ".join(stale)


def test_timeframes_are_listed_only_in_kitrade_timeframes() -> None:
    """No other module spells out a list of timeframe names (they read ``TIMEFRAME_NAMES``)."""
    from kitrade.timeframes import TIMEFRAME_NAMES

    names = set(TIMEFRAME_NAMES)
    found = []
    for path in _sources().values():
        if _rel(path) == "kitrade/timeframes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List | ast.Tuple | ast.Set):
                items = node.elts
            elif isinstance(node, ast.Compare):  # `tf in ("H1", "D1", ...)`
                items = [e for c in node.comparators if isinstance(c, ast.Tuple) for e in c.elts]
            else:
                continue
            values = {e.value for e in items if isinstance(e, ast.Constant)}
            if len(values) >= 3 and values <= names:
                found.append(f"{_rel(path)}:{node.lineno}")
    assert not found, "timeframe lists outside kitrade/timeframes.py: " + ", ".join(found)


def test_per_timeframe_defaults_cover_exactly_the_timeframes() -> None:
    from kitrade.timeframes import TIMEFRAME_NAMES
    from kitrade.training.spec import TIMEFRAME_DEFAULTS

    assert list(TIMEFRAME_DEFAULTS) == list(TIMEFRAME_NAMES)
