"""No import cycles in colopp/ and api/colopp_api/ (the module graph, read with ast).

Every import counts, also one inside a function (a lazy import hides a cycle, it does not
remove it); only ``if TYPE_CHECKING:`` blocks are left out (never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = {"colopp": ROOT / "colopp", "colopp_api": ROOT / "api" / "colopp_api"}

# Known cycles, each removed by a branch still to be merged. Name the branch; drop the
# entry when it is merged (the test fails on an entry that is no longer a cycle).
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([top, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; else the names live in pkg.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        for dotted in targets:
            target = dotted
            while target and target not in modules:  # ``import a.b.c`` of a package path
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    names = set(files)
    return {name: imported_modules(name, path, names) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "colopp.controller.pair" in graph["colopp.controller.supervisor"]
    assert "colopp.domain" in graph["colopp_api.live.placement"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles() -> None:
    found = set(cycles(import_graph()))
    unexpected = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    stale = [f"{sorted(c)} ({why})" for c, why in ALLOWED_CYCLES.items() if c not in found]
    assert not stale, f"allowed cycles that are gone, drop them from ALLOWED_CYCLES: {stale}"


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between folders (``colopp.agent``, ``colopp.qemu``, ...)."""

    def folder(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, imports in graph.items():
        here = folder(module)
        out.setdefault(here, set()).update(folder(m) for m in imports if folder(m) != here)
    for imports in list(out.values()):
        for name in imports:
            out.setdefault(name, set())
    return out


def test_no_import_cycles_between_folders() -> None:
    """E.g. qemu/ must not import agent/ while agent/ imports qemu/."""
    assert cycles(folder_graph(import_graph())) == []


def test_the_api_and_controller_name_roles_without_the_argv_builder() -> None:
    graph = import_graph()
    for name, imports in graph.items():
        if name.startswith(("colopp_api", "colopp.controller")):
            assert "colopp.qemu.argv" not in imports, name


def test_the_api_uses_the_labs_public_names_only() -> None:
    graph = import_graph()
    for name, imports in graph.items():
        if name.startswith("colopp_api"):
            inside = sorted(m for m in imports if m.startswith("colopp.lab."))
            assert not inside, f"{name} reaches into {inside}: use colopp.lab's names"
