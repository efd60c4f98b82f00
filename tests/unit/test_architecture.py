"""The layout rules of DESIGN.md, checked on the source: imports run one way, no import circles.

Every project module is parsed with ``ast`` (nothing is imported), every ``import`` statement,
lazy ones inside functions included, becomes an edge of the import graph among the project's
modules, and the graph must be acyclic. The layer rule: the libraries (``training/``,
``rl_agent/``, ``monitoring/``) never import the application (``stockml``), ``serving``,
Airflow, the plugins or the DAGs; ``stockml`` never imports ``serving``, the plugins or the DAGs.
No module of ``stockml/`` or ``serving/`` is longer than 450 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("stockml", "training", "monitoring", "rl_agent", "serving", "bench")
LIBRARIES = ("training", "monitoring", "rl_agent")
# Top-level import names each layer must never use.
FORBIDDEN = {
    **{lib: ("stockml", "serving", "airflow", "stockml_airflow", "dags") for lib in LIBRARIES},
    "stockml": ("serving", "stockml_airflow", "dags"),
}


def project_modules(repo: Path = REPO) -> dict[str, Path]:
    """Module name → file, for the packages, the Airflow plugins and the DAG files."""
    modules: dict[str, Path] = {}

    def add(root: Path, base: Path) -> None:
        for path in sorted(root.rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in path.parts):
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path

    for pkg in PACKAGES:
        if (repo / pkg).is_dir():
            add(repo / pkg, repo)
    if (repo / "plugins").is_dir():
        add(repo / "plugins", repo / "plugins")  # on sys.path in Airflow: stockml_airflow.common
    for dag in sorted((repo / "dags").glob("*.py")):
        modules[f"dags.{dag.stem}"] = dag
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_names(module: str, path: Path) -> set[str]:
    """Every absolute name ``path`` imports (``from a import b`` gives a.b, which may be a module or not)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            # ``from a import b``: the module a.b if there is one, else a (import_graph walks up).
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """Edges between project modules (an import of ``a.b.c`` that is not a module counts as ``a.b``)."""
    modules = project_modules(repo)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def layer_violations(repo: Path = REPO) -> list[str]:
    modules = project_modules(repo)
    out = []
    for module, path in modules.items():
        layer = module.split(".")[0]
        forbidden = FORBIDDEN.get(layer)
        if not forbidden:
            continue
        for name in sorted(imported_names(module, path)):
            top = name.split(".")[0]
            if top in forbidden:
                out.append(f"{module} imports {name}")
    return out


def test_the_graph_sees_the_project():
    graph = import_graph()
    assert {"stockml.cli", "stockml.settings", "training.forecasting.metrics", "stockml_airflow.common"} <= set(graph)
    assert "stockml.settings" in graph["stockml.cli"]
    assert any(m.startswith("dags.") for m in graph)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_imports_run_one_way():
    violations = layer_violations()
    assert not violations, "layer rule broken:\n" + "\n".join(violations)


def test_cycle_finder_reports_a_circle(tmp_path):
    pkg = tmp_path / "stockml"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from stockml import b\n")
    (pkg / "b.py").write_text("from stockml.a import f\n")
    (pkg / "c.py").write_text("from . import a\nimport serving.x\n")
    graph = import_graph(tmp_path)
    assert graph["stockml.c"] == {"stockml.a"}
    assert find_cycle(graph) in (["stockml.a", "stockml.b", "stockml.a"], ["stockml.b", "stockml.a", "stockml.b"])
    assert layer_violations(tmp_path) == ["stockml.c imports serving.x"]
    (pkg / "b.py").write_text("")
    assert find_cycle(import_graph(tmp_path)) is None


MAX_MODULE_LINES = 450  # issue 10: the application and serving stay in small modules
SMALL_MODULE_PACKAGES = ("stockml", "serving")


def long_modules(repo: Path = REPO, limit: int = MAX_MODULE_LINES) -> list[str]:
    """``module (lines)`` for each module of ``stockml/`` or ``serving/`` longer than ``limit`` lines."""
    out = []
    for module, path in project_modules(repo).items():
        if module.split(".")[0] in SMALL_MODULE_PACKAGES:
            n = len(path.read_text().splitlines())
            if n > limit:
                out.append(f"{module} ({n} lines)")
    return out


def test_application_and_serving_modules_stay_small(tmp_path):
    pkg = tmp_path / "serving"
    pkg.mkdir()
    (pkg / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (pkg / "ok.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    assert long_modules(tmp_path) == [f"serving.big ({MAX_MODULE_LINES + 1} lines)"]  # the check can fail
    too_long = long_modules()
    assert not too_long, f"split these (over {MAX_MODULE_LINES} lines): " + ", ".join(too_long)


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_do_not_read_the_environment(library):
    """No ``os.environ``/``os.getenv`` in the libraries: knobs come in as parameters (DESIGN.md)."""
    offenders = []
    for module, path in project_modules().items():
        if module.split(".")[0] != library:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, "environment read in a library: " + ", ".join(offenders)


def _artifact_names() -> set[str]:
    from stockml.layout import HomeLayout, RouterReport, RunLayout

    names: set[str] = set()
    for layout in (RunLayout(Path("run")), HomeLayout(Path("home")), RouterReport(Path("report"))):
        for attr in dir(type(layout)):
            value = getattr(layout, attr) if isinstance(getattr(type(layout), attr), property) else None
            values = value if isinstance(value, tuple) else (value,)
            names.update(v.name for v in values if isinstance(v, Path))
            if isinstance(value, RouterReport):
                names.add(value.root.name)
    return {n for n in names if "." in n or "_" in n}  # not "runs": a word, not only a folder name


def test_only_the_layout_spells_artifact_names():
    """The run folder is a declared interface: no module but ``stockml.layout`` builds those paths."""
    names = _artifact_names()
    assert {"demand.parquet", "router.json", "router_report", "latest_demand.json", "evaluation.html"} <= names
    offenders = []
    for module, path in project_modules().items():
        if module.split(".")[0] not in ("stockml", "stockml_airflow", "dags") or module == "stockml.layout":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{module}:{node.lineno} {node.value!r}")
    assert not offenders, "artifact path built outside stockml.layout: " + ", ".join(offenders)
