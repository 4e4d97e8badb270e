"""The structure the project promises (ARCHITECTURE.md), checked from the source with ``ast``:

- the layer rule: io < data < encoders < postprocess, diagnostics < store < evaluation,
  retrieval, training < integrations < runs < reports < cli; no import goes up a layer
  (function-local imports included) and no import cycle between packages or between modules of a
  package;
- the library does not know its command line: outside ``embedkit/cli/`` no module imports
  argparse, calls ``print(`` or holds a ``--flag`` string;
- no function in ``embedkit/`` is longer than 80 lines, no module longer than 600, and no
  package holds more than 20% of the package's lines (a grab-bag is split, not grown);
- the package never imports the project's own benchmark drivers (``benchmarks/``, not
  installed): neither ``benchmarks`` nor any script of that folder by its name.
- runners and reports apart: no module under ``embedkit/runs/`` imports matplotlib or
  holds Markdown table rows or HTML (the renderers live in ``embedkit/reports/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embedkit"

#: the layer of each top-level part of the package; the base modules may be imported by all
LAYERS = {
    "__init__": 0, "errors": 0, "provenance": 0,
    "io": 1,
    "data": 2,
    "encoders": 3,
    "postprocess": 4, "diagnostics": 4,
    "store": 5,
    "evaluation": 6, "retrieval": 6, "training": 6,
    "integrations": 7,
    "runs": 8,
    "reports": 9,
    "cli": 10, "__main__": 10,
}
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600
MAX_PACKAGE_SHARE = 0.20
#: the benchmark drivers: importable as ``benchmarks.X`` or, from their folder, as ``X``
BENCHMARKS = PACKAGE.parent / "benchmarks"
BENCHMARK_NAMES = {"benchmarks"} | {f.stem for f in BENCHMARKS.glob("*.py")}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(-[a-z0-9]+)*")


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """embedkit modules imported anywhere in ``module`` (``from pkg import sub`` -> pkg.sub)."""
    found: set[str] = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "embedkit" or n.startswith("embedkit."))
    return {n if n in MODULES else n.rsplit(".", 1)[0] for n in found} - {module}


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_part_has_a_layer():
    assert {_part(m) for m in MODULES} <= set(LAYERS), "add new packages to LAYERS and ARCHITECTURE.md"


def test_no_import_goes_up_a_layer():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if LAYERS[_part(t)] > LAYERS[_part(m)]]
    assert upward == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph.get(n, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_cycle_between_packages():
    parts: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        parts.setdefault(_part(m), set()).update(
            _part(t) for t in targets if LAYERS[_part(t)] > 0 and _part(t) != _part(m))
    assert _cycle(parts) is None


def test_no_cycle_between_modules():
    # A package's __init__ re-exports its modules; edges into it from its own modules are
    # Python's usual package structure, not a design cycle.
    graph = {m: {t for t in ts if not (MODULES[t].name == "__init__.py"
                                        and m.startswith(t + "."))}
             for m, ts in GRAPH.items()}
    assert _cycle(graph) is None


def _library() -> list[str]:
    return [m for m in MODULES if _part(m) not in ("cli", "__main__")]


@pytest.mark.parametrize("module", _library())
def test_library_does_not_know_its_command_line(module):
    tree = TREES[module]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            problems.append(f"line {node.lineno}: imports argparse")
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            problems.append(f"line {node.lineno}: imports argparse")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "print":
            problems.append(f"line {node.lineno}: print(")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (m := FLAG.search(node.value)):
            problems.append(f"line {node.lineno}: names the flag {m.group(0)}")
    assert problems == []


#: a Markdown table row (a line starting ``| `` or ``|---``, ``|:--``) or an HTML page
RENDERED = re.compile(r"^\s*\|( |:?-{3})|<html", re.MULTILINE | re.IGNORECASE)


def _rendering(tree: ast.AST) -> list[str]:
    """Where a module renders: imports of matplotlib, strings holding a Markdown table row or
    ``<html``."""
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "matplotlib" or n.startswith("matplotlib.") for n in names):
            found.append(f"line {node.lineno}: imports matplotlib")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (m := RENDERED.search(node.value)):
            found.append(f"line {node.lineno}: renders {m.group(0).lstrip()!r}")
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if _part(m) == "runs"])
def test_runners_render_nothing(module):
    """Runners build records; tables, Markdown, HTML and plots are embedkit/reports/'s (the
    diagnostics' own plots, diagnostics/plots.py, included)."""
    assert _rendering(TREES[module]) == []
    assert "embedkit.diagnostics.plots" not in GRAPH[module]


def test_functions_are_short():
    long = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert long == []


def _benchmark_imports(tree: ast.AST) -> list[str]:
    """``line N: imports X`` for every import of ``benchmarks/`` (or one of its scripts)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [f"line {node.lineno}: imports {n}" for n in names
                  if n.split(".")[0] in BENCHMARK_NAMES]
    return found


def test_the_package_never_imports_the_benchmarks():
    assert {"bench_speed", "bench_scale", "report_simcse", "report_compare"} <= BENCHMARK_NAMES
    problems = {m: p for m, tree in TREES.items() if (p := _benchmark_imports(tree))}
    assert problems == {}


def test_the_benchmark_drivers_left_the_package():
    """The speed, scale, SimCSE and compare drivers, ``embedkit report`` and the start-up probe
    live in ``benchmarks/`` (issue 19), not in the package."""
    gone = {"embedkit.runs.speed", "embedkit.runs.speed_worker",
            "embedkit.runs.speed_cost", "embedkit.runs.speed_report",
            "embedkit.runs.scale", "embedkit.runs.simcse_report",
            "embedkit.runs.compare_report", "embedkit.cli.report_cmd",
            "embedkit.cli.startup"}
    assert gone.isdisjoint(MODULES)
    assert "embedkit.runs.compare" in MODULES  # embedkit compare --html stays


def test_the_checks_can_fail(tmp_path):
    """The detectors find what they look for (so the tests above cannot pass vacuously)."""
    assert FLAG.search("pass --fit-on FILE") and not FLAG.search("x--y and 1 -- 2")
    assert _benchmark_imports(ast.parse("import os\nfrom benchmarks.bench_speed import x\n"
                                        "def f():\n    import speed_cost")) == [
        "line 2: imports benchmarks.bench_speed", "line 4: imports speed_cost"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    rendering = _rendering(ast.parse(
        'import matplotlib.pyplot as plt\nROW = "| a | b |"\nSEP = "x\\n|---|---:|"\n'
        'PAGE = "<!doctype html><HTML>"\nTYPE = "str | None"\n'))
    assert rendering == ["line 1: imports matplotlib", "line 2: renders '| '",
                         "line 3: renders '|---'", "line 4: renders '<HTML'"]
    assert _rendering(TREES["embedkit.reports.sweep"])  # the renderers are where they belong
    assert "embedkit.encoders" in GRAPH["embedkit.runs.bench"] or any(
        t.startswith("embedkit.encoders") for t in GRAPH["embedkit.runs.bench"])


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_modules_are_short():
    long = {name: n for name, path in MODULES.items() if (n := _lines(path)) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: split them"


def test_no_package_holds_more_than_a_fifth():
    sizes: dict[str, int] = {}
    for name, path in MODULES.items():
        sizes[_part(name)] = sizes.get(_part(name), 0) + _lines(path)
    total = sum(sizes.values())
    big = {part: round(n / total, 3) for part, n in sizes.items() if n > MAX_PACKAGE_SHARE * total}
    assert big == {}, f"packages over {MAX_PACKAGE_SHARE:.0%} of {total} lines"
