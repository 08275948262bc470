"""The package's import graph has no cycles.

Walks the AST of every module under src/corral, collects the corral modules
each one imports (at module level or in functions: a cycle through a lazy
import is still a cycle in the design), and fails on any strongly connected
component of more than one module.  Imports under ``if TYPE_CHECKING:`` are
annotations only (e.g. a handler naming the ``Daemon`` type it is given) and
do not count.  Cycles owned by work
in progress elsewhere are listed in KNOWN with the reason; any other cycle,
or a known one that grew, fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "corral"

# Cycles being removed on other branches (issue #10); each entry is the exact set of modules.
KNOWN: dict[frozenset[str], str] = {
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The corral modules a module imports (a name imported from a package counts as its submodule if one exists)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    type_only = {id(n) for block in ast.walk(tree) if is_type_checking_block(block) for stmt in block.body for n in ast.walk(stmt)}  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, path.name == "__init__.py", node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            # `import corral.x.y` depends on corral.x.y; keep the longest known prefix
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith(PACKAGE):
                out.add(t)
    return out


def is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {name: imports_of(name, path, known) for name, path in mods.items()}
    # a package's __init__ is imported with any of its submodules, but that is Python's
    # import order, not a design dependency: only explicit imports count
    return g


def cycles(g: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[frozenset[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(g[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, todo = work[-1]
            if todo:
                w = todo.pop()
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, sorted(g[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_the_walk_sees_the_package() -> None:
    g = graph()
    assert "corral.statemachine" in g and "corral.daemon.supervisor" in g
    assert "corral.statemachine" in g["corral.daemon.supervisor"]
    assert "corral.daemon.supervisor" in g["corral.daemon.server"]


def test_cycle_detection_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(g) == [frozenset({"a", "b", "c"})]


def test_relative_imports_resolve() -> None:
    node = ast.parse("from ..x import y").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve("corral.daemon.server", False, node) == "corral.x"
    node = ast.parse("from . import y").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve("corral.daemon", True, node) == "corral.daemon"


def test_no_import_cycles() -> None:
    found = cycles(graph())
    unknown = [sorted(c) for c in found if c not in KNOWN]
    assert not unknown, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in unknown)


def test_known_cycles_are_still_there() -> None:
    """A known cycle that is gone must leave KNOWN, so it cannot come back unnoticed."""
    found = cycles(graph())
    gone = [" <-> ".join(sorted(k)) for k in KNOWN if k not in found]
    assert not gone, f"no longer cycles, remove them from KNOWN: {gone}"


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nimport corral.a\nif TYPE_CHECKING:\n    from corral.b import B\ndef f():\n    from corral.c import C\n")
    assert imports_of("corral.m", mod, {"corral.a", "corral.b", "corral.c", "corral.m"}) == {"corral.a", "corral.c"}
