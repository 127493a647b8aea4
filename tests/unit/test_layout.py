"""The package's layers: imports go one way (cli -> runs/report/bench -> training -> mtl/data),
no module imports itself back through another, and ``mtlbench --help`` stays light."""

from __future__ import annotations

import ast
from pathlib import Path

import mtlbench

ROOT = Path(mtlbench.__file__).parent

# What each layer may import (besides itself). A layer missing from a set is above it.
ALLOWED: dict[str, set[str]] = {
    "infra": set(),
    "config": {"infra"},
    "tracking": {"infra"},
    "data": {"infra", "config", "mtl"},
    "mtl": {"infra", "config"},
    "weighting": {"mtl"},
    "training": {"infra", "config", "data", "mtl", "weighting", "tracking"},
    "report": {"infra", "config", "mtl", "weighting", "tracking"},  # declared strategy facts
    "predict": {"infra", "config", "data", "mtl"},
    "runs": {
        "infra", "config", "data", "mtl", "weighting", "training", "tracking", "report", "predict",
    },
    "bench": {"infra", "config", "data", "mtl", "weighting", "training", "tracking", "runs"},
    "toy": {"infra", "config", "mtl", "weighting", "training", "tracking", "report"},
    "cli": {
        "infra", "config", "data", "mtl", "weighting", "training", "tracking", "report", "runs",
        "bench", "toy", "predict",
    },
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every mtlbench module and the mtlbench modules it imports anywhere in its body, imports
    under ``if TYPE_CHECKING:`` included: an import for annotations still ties the two modules
    together (one hid a cycle here once: ``mtlbench.toy.plot -> mtlbench.toy.run -> plot``)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("mtlbench"):
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("mtlbench"))
        graph[name] = found
    modules = set(graph)
    return {m: {i for i in deps if i in modules and i != m} for m, deps in graph.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _upward(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, deps in graph.items():
        layer = _layer(module)
        if layer not in ALLOWED:
            continue
        for dep in deps:
            target = _layer(dep)
            if target and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{module} -> {dep}")
    return sorted(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules, a package's ``__init__`` included: ``from mtlbench.cli
    import run`` runs ``mtlbench/cli/__init__.py`` first, so a package importing one of its
    modules that imports the package back is a cycle too (one hid here once:
    ``mtlbench.cli -> mtlbench.cli.app -> mtlbench.cli``)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_layers_import_only_downwards() -> None:
    assert _upward(_imports()) == []


def test_no_import_cycles() -> None:
    assert _cycles(_imports()) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    fake = {
        "mtlbench.runs.grid": {"mtlbench.runs.pool"},
        "mtlbench.runs.pool": {"mtlbench.runs.grid"},
        "mtlbench.training.fit": {"mtlbench.runs.trial", "mtlbench.mtl.tasks"},
        "mtlbench.weighting": {"mtlbench.weighting.sum"},
        "mtlbench.weighting.sum": {"mtlbench.weighting"},
    }
    assert _cycles(fake) == [
        ["mtlbench.runs.grid", "mtlbench.runs.pool", "mtlbench.runs.grid"],
        ["mtlbench.weighting", "mtlbench.weighting.sum", "mtlbench.weighting"],
    ]
    assert _upward(fake) == ["mtlbench.training.fit -> mtlbench.runs.trial"]


MAX_LINES = 80


def _long_functions(root: Path) -> list[str]:
    """Functions whose body (signature and docstring aside: a Typer command declares its options
    in the signature) runs over MAX_LINES lines without saying why ("Long on purpose")."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node) or ""
            body = node.body[1:] if doc else node.body
            if not body:
                continue
            lines = (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1
            if lines > MAX_LINES and "long on purpose" not in doc.lower():
                out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines})")
    return out


def test_no_function_runs_long_without_a_reason(tmp_path: Path) -> None:
    assert _long_functions(ROOT) == []
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES + 1))
    (pkg / "m.py").write_text(
        f"def f():\n{body}\n\n\ndef g():\n    '''Long on purpose.'''\n{body}\n"
    )
    assert _long_functions(pkg) == [f"pkg/m.py:1 f ({MAX_LINES + 1})"]
