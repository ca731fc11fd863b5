"""The package's layout: no two modules import each other, directly or round a longer loop.

An import circle means neither module can be understood, tested or moved
without the other, and it works at run time only as long as one side hides
its import inside a function.  So every ``import digits...`` and
``from digits... import`` counts, wherever it is written: at module level,
inside a function, or under ``if TYPE_CHECKING:`` (a dependency for the type
checker is still a dependency a reader follows).  Relative imports count the
same.  What does not count is a name looked up at run time by string
(``importlib.import_module``, as ``digits.__init__`` loads its API lazily):
that is the one sanctioned way for a package's front door to point at the
modules behind it.

``from digits.pkg import name`` is an edge to the module ``digits.pkg.name``
when that module exists, else to ``digits.pkg`` itself (its ``__init__``).
A module is not counted as importing the packages above it, although Python
runs their ``__init__`` first: that is how packages work, not a design choice.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "digits"


def _module_names(src: Path = SRC) -> dict[str, Path]:
    """Every module under src/digits by dotted name (a package by its own name, for __init__)."""
    modules = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package modules `name` imports, each with the line of its first import."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != name:
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package holding this module, `level - 1` up
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = _module_names()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One import circle per strongly connected group of modules (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_loop(graph, group) for group in groups]


def _shortest_loop(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """The shortest closed path through the group's first module (breadth-first)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return paths[node] + [start]
            if nxt in group and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"no loop in the strongly connected group {sorted(group)}")


def _describe(graph: dict[str, dict[str, int]], loop: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(loop, loop[1:])]
    return " -> ".join(steps + [loop[-1]])


def test_the_package_has_no_import_circles():
    graph = import_graph()
    loops = find_cycles(graph)
    assert not loops, "import circles:\n" + "\n".join(_describe(graph, loop) for loop in loops)


def test_the_cycle_finder_sees_direct_indirect_and_function_level_imports(tmp_path):
    """The finder itself, on a tiny package: a circle through a function-level import is found."""
    pkg = tmp_path / "digits"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from digits.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("def f():\n    import digits.a\n")
    (pkg / "lone.py").write_text("from digits import a\n")
    modules = _module_names(tmp_path)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["digits.a"] == {"digits.sub.b": 1}
    assert graph["digits.sub.b"] == {"digits.sub.c": 1}
    assert find_cycles(graph) == [["digits.a", "digits.sub.b", "digits.sub.c", "digits.a"]]
    assert _describe(graph, find_cycles(graph)[0]) == (
        "digits.a (line 1) -> digits.sub.b (line 1) -> digits.sub.c (line 2) -> digits.a")

