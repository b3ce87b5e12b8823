"""The package's shape: no import cycles, a light ``import rnnfuse``, working old paths.

The import graph is read from the source with ``ast`` (nothing is imported): every
``import``/``from ... import`` of an rnnfuse module counts, at module level or deferred
inside a function; imports under ``if TYPE_CHECKING:`` do not (they never run).  Importing
``a.b.c`` also runs the ``__init__`` of ``a.b`` unless the importer lives inside ``a.b``.
Run as a script to print the cycles: ``PYTHONPATH=src python tests/package/test_architecture.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "rnnfuse"
HEAVY = ("matplotlib", "h5py", "keras", "statsmodels", "rnnfuse.tf1", "rnnfuse.app")


# --------------------------------------------------------------------------- the graph
def module_files(src: Path = SRC, root: str = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package."""
    out = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement names."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]
) -> set[str]:
    """The rnnfuse modules one statement runs (or needs finished, for names it takes)."""
    if isinstance(node, ast.Import):
        found = {_known_prefix(alias.name, known) for alias in node.names}
        return found - {None}  # type: ignore[return-value]
    base = _base(module, is_package, node)
    submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    takes_attributes = len(submodules) < len(node.names)
    found = set(submodules)
    if takes_attributes or not _is_ancestor(base, module):  # an ancestor's __init__ already runs
        found.add(_known_prefix(base, known))
    return found - {None}  # type: ignore[return-value]


def _is_ancestor(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def _known_prefix(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def _with_parents(module: str, target: str, known: set[str]) -> set[str]:
    """``target`` and the packages whose ``__init__`` importing it runs, as seen from ``module``."""
    out, parts = {target}, target.split(".")
    for end in range(1, len(parts)):
        parent = ".".join(parts[:end])
        if parent in known and not _is_ancestor(parent, module):
            out.add(parent)
    return out


def import_graph(src: Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    """``{module: rnnfuse modules it imports}``, deferred imports included."""
    files = module_files(src, root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            for target in _targets(module, is_package, node, known):
                edges |= _with_parents(module, target, known)
        graph[module] = edges - {module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(components)


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module, for the error message."""
    start, members = component[0], set(component)
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for succ in sorted(graph[path[-1]] & members):
            if succ == start:
                return path + [start]
            if succ not in seen:
                seen.add(succ)
                paths.append(path + [succ])
    return component


def describe_cycles(graph: dict[str, set[str]]) -> list[str]:
    return [" -> ".join(cycle_path(graph, c)) + f"   (component: {c})" for c in find_cycles(graph)]


# --------------------------------------------------------------------------- the tests
def test_the_graph_reader_sees_deferred_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import x\nimport pkg.a\n"
    )
    (pkg / "c.py").write_text("from . import sub\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.sub"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycles() -> None:
    cycles = describe_cycles(import_graph())
    assert not cycles, "import cycles among rnnfuse modules:\n" + "\n".join(cycles)


@pytest.mark.slow
def test_import_rnnfuse_stays_light() -> None:
    code = f"import sys, rnnfuse; print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_command_line_stays_out_of_import_rnnfuse() -> None:
    code = (
        "import sys, rnnfuse; print(sorted(m for m in sys.modules if m == 'rnnfuse.cli' "
        "or m.endswith('.commands')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_command_groups_have_one_shape() -> None:
    """Every ``commands.py`` is a group listed once in ``rnnfuse.cli.GROUPS`` with
    ``add_commands``; no other module registers commands, and none but ``python -m rnnfuse``
    imports the CLI back."""
    from rnnfuse.cli import GROUPS

    files = module_files()
    groups = sorted(name for name in files if name.rpartition(".")[2] == "commands")
    assert sorted(name for name, _ in GROUPS) == groups
    registering = sorted(
        name
        for name, path in files.items()
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "add_commands"
            for node in ast.parse(path.read_text()).body
        )
    )
    assert registering == groups
    importers = sorted(m for m, targets in import_graph().items() if "rnnfuse.cli" in targets)
    assert importers == ["rnnfuse.__main__"], f"modules importing rnnfuse.cli: {importers}"


@pytest.mark.slow
def test_lazy_names_load_on_use() -> None:
    code = (
        "import sys, rnnfuse; from rnnfuse import tf1, stack_from_keras; "
        "print(tf1.__name__, stack_from_keras.__module__, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["rnnfuse.tf1", "rnnfuse.convert.keras", "False"]


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads the version from ``rnnfuse.__version__`` (no second copy to forget)."""
    import importlib.metadata

    import tomllib

    import rnnfuse

    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("rnnfuse") == rnnfuse.__version__


if __name__ == "__main__":
    found = describe_cycles(import_graph())
    print("\n".join(found) if found else "no import cycles")
