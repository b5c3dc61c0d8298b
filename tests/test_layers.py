"""The import graph of stseval/: imports only run downward through the layers, and no two modules import
each other (directly or round a longer loop).

Layer order, lowest first (docs/DESIGN.md, ../shared/STYLE.md "Shape of the package"): a module may import
from its own layer or from one below it, never from one above.

    common -> data -> options -> encoders -> methods -> evaluation -> runs -> report -> api -> cli

`stseval/__init__.py` is the lazy public facade: nothing inside stseval imports it (`__version__` lives in
`stseval.common.version`). Every import counts, at module level or inside a function (a lazy import is an
arrow in the graph all the same), and so does an `if TYPE_CHECKING:` import. The modules are read with
`ast`, never imported, so the test needs no torch or faiss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "stseval"

LAYERS = ("common", "data", "options", "encoders", "methods", "evaluation", "runs", "report", "api", "cli")
FACADE = "stseval"
TOP_LEVEL_LAYER = {"cli_options": "cli", "cli_typer": "cli", "cli_commands": "cli"}
# ^ a top-level module that is not a layer of its own belongs to the layer named here (the shared CLI option
#   definitions are part of the CLI layer)

KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()
"""(importer, imported) edges allowed to run upward or close a cycle: none since issue #27 landed. An edge
added here must say why; the test below fails when a listed edge no longer exists, so the list cannot go stale."""


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}


def layer_of(module: str) -> str:
    """The layer of a module name: its first part below stseval ("stseval.methods.index" -> "methods")."""
    if module == FACADE:
        return FACADE
    top = module.split(".")[1]
    layer = TOP_LEVEL_LAYER.get(top, top)
    if layer not in LAYERS:
        raise AssertionError(f"{module}: in no layer; add it to LAYERS or TOP_LEVEL_LAYER in tests/test_layers.py")
    return layer


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported stseval module, line) for every import in a module's source, wherever it sits."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from stseval.report import grids` imports the module stseval.report.grids; `from stseval.report.grids
            # import build_grid` imports stseval.report.grids
            names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == FACADE or name.startswith(FACADE + "."):
                while name not in modules and "." in name:  # `import stseval.x.y as z` of a missing module
                    name = name.rpartition(".")[0]
                found.append((name, node.lineno))
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, dict[str, int]]:
    """importer -> {imported: first line}, stseval modules only, self-imports dropped."""
    modules = all_modules(package_dir)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for imported, line in imports_of(module, path, modules):
            if imported != module:
                edges.setdefault(imported, line)
        graph[module] = edges
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> dict[tuple[str, str], str]:
    """(importer, imported) -> why, for each import into a higher layer or of the facade."""
    bad = {}
    for module, edges in graph.items():
        if module == FACADE:
            continue
        mine = LAYERS.index(layer_of(module))
        for imported, line in edges.items():
            layer = layer_of(imported)
            if layer == FACADE:
                bad[(module, imported)] = f"{module} (line {line}) imports the facade {FACADE}/__init__.py"
            elif LAYERS.index(layer) > mine:
                bad[(module, imported)] = (f"{module} (layer {layer_of(module)}, line {line}) imports {imported} "
                                           f"(layer {layer}, above it)")
    return bad


def cycle_edges(graph: dict[str, dict[str, int]]) -> dict[tuple[str, str], str]:
    """(importer, imported) -> why, for each import between two modules of one cycle (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count (~60)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    bad = {}
    for component in components:
        for module in sorted(component):
            for imported, line in graph[module].items():
                if imported in component:
                    bad[(module, imported)] = (f"{module} (line {line}) imports {imported}: a cycle among "
                                               f"{', '.join(sorted(component))}")
    return bad


def violations(package_dir: Path = PACKAGE_DIR) -> dict[tuple[str, str], str]:
    """Every upward import, then every import that closes a cycle among the rest.

    A cycle through an upward import is named once, by that import; the cycles left (the edges that run
    downward or stay in one layer) are the ones within a layer. The facade's own lazy imports of api are
    by design and left out.
    """
    graph = import_graph(package_dir)
    upward = upward_imports(graph)
    downward = {module: {imported: line for imported, line in edges.items() if (module, imported) not in upward}
                for module, edges in graph.items() if module != FACADE}
    return {**cycle_edges(downward), **upward}


def test_imports_only_run_downward_and_never_in_a_cycle():
    found = violations()
    new = {edge: why for edge, why in found.items() if edge not in KNOWN_VIOLATIONS}
    assert not new, "imports that run upward or close a cycle:\n" + "\n".join(sorted(new.values()))


def test_known_violations_still_exist():
    """An allow-listed edge that is gone must leave KNOWN_VIOLATIONS, so the list cannot outlive the fixes."""
    stale = sorted(KNOWN_VIOLATIONS - set(violations()))
    assert not stale, f"no longer violations, remove from KNOWN_VIOLATIONS: {stale}"


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "stseval"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return root


def test_an_upward_import_is_named_at_module_level_and_inside_a_function(tmp_path):
    root = _package(tmp_path, {
        "common/errors.py": "",
        "data/tasks.py": "from stseval.common.errors import X\n",  # downward: fine
        "methods/index.py": "def f():\n    from stseval.runs import results\n",  # lazy, upward
        "runs/results.py": "from stseval.methods.index import f\n",  # downward
        "evaluation/metrics.py": "import stseval.report.grids as grids\n",  # upward
        "report/grids.py": "from stseval import __version__\n",  # the facade
    })
    found = violations(root)
    assert set(found) == {("stseval.methods.index", "stseval.runs.results"),
                          ("stseval.evaluation.metrics", "stseval.report.grids"),
                          ("stseval.report.grids", "stseval")}
    # methods.index <-> runs.results is also a cycle: named once, by its upward import (runs.results -> methods.index
    # runs downward and is no violation)
    assert "layer methods, line 2" in found[("stseval.methods.index", "stseval.runs.results")]


def test_a_cycle_within_one_layer_is_named(tmp_path):
    root = _package(tmp_path, {
        "encoders/a.py": "from . import b\n",
        "encoders/b.py": "def f():\n    from stseval.encoders.c import g\n",
        "encoders/c.py": "from .a import h\n",
        "encoders/d.py": "from stseval.encoders import a\n",  # into the cycle, not part of it
    })
    found = violations(root)
    assert set(found) == {("stseval.encoders.a", "stseval.encoders.b"), ("stseval.encoders.b", "stseval.encoders.c"),
                          ("stseval.encoders.c", "stseval.encoders.a")}


def test_a_module_outside_the_layers_is_refused(tmp_path):
    root = _package(tmp_path, {"helpers.py": ""})
    with pytest.raises(AssertionError, match="stseval.helpers: in no layer"):
        violations(root)
