"""The house rules, kept: the package's import graph has no cycle, the library wing never imports
the shipper wing (the lazy ``ElasticsearchHandler`` export aside), only the owner of offsets
uses the state store during a run, and no module or test imports another's private names or a
test module.  Read with ``ast`` from the source: nothing is imported (but the package itself,
to see its public names, loaded on first use, resolve to what its type-checking imports say)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "amebo_logging"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str) -> list[tuple[str, str, int]]:
    """(module imported, name imported from it or "", line) for every import in *path*,
    function-level ones included: a lazy import is still a dependency."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for module, imported, _line in _imports(path, name):
            target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
            if target in MODULES and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 40  # the whole package was read
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_library_wing_never_imports_the_shipper_wing():
    graph = _graph()
    crossing = {
        (name, dep)
        for name, deps in graph.items()
        if not name.startswith("amebo_logging.ship")
        for dep in deps
        if dep.startswith("amebo_logging.ship")
    }
    # the one exception: `from amebo_logging import ElasticsearchHandler`, loaded on first use
    assert crossing == {("amebo_logging", "amebo_logging.ship.handler")}


def test_only_the_owner_of_offsets_opens_the_state_store_during_a_run():
    users = {
        name
        for name, path in MODULES.items()
        for module, imported, _ in _imports(path, name)
        if module == "amebo_logging.ship.state" and imported == "StateStore"
    }
    # offsets.py during a run; status.py reads it for `status`, with no shipper involved
    assert users == {"amebo_logging.ship.offsets", "amebo_logging.ship.status"}


def test_the_reader_never_imports_the_owner_of_offsets():
    graph = _graph()
    for reader in ("discover", "reader", "identity", "items", "formats"):
        assert "amebo_logging.ship.offsets" not in graph[f"amebo_logging.ship.{reader}"], reader


def test_no_private_name_is_imported_and_no_test_module_imports_another():
    offences = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        name = _module_name(path) if path.is_relative_to(PACKAGE) else "tests." + path.stem
        for module, imported, line in _imports(path, name):
            where = f"{path.relative_to(ROOT)}:{line}"
            if imported.startswith("_") and not imported.startswith("__"):
                offences.append(f"{where} imports the private {module}.{imported}")
            if module.split(".")[-1].startswith("test_") or imported.startswith("test_"):
                offences.append(f"{where} imports the test module {module}.{imported}".rstrip("."))
    assert offences == []


def _type_checking_names() -> dict[str, str]:
    """name -> the module it is imported from, in the package's ``if TYPE_CHECKING:`` block."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    [block] = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    names = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.unparse(node)
        for alias in node.names:
            names[alias.asname or alias.name] = f"amebo_logging.{node.module}" if node.module else ""
    return names


def test_the_public_names_loaded_on_first_use_are_the_ones_the_type_checker_sees():
    """The package names its public surface three times (its type-checking imports, where each
    is loaded from on first use, ``__all__``): they agree, name by name and module by module."""
    import amebo_logging

    declared = _type_checking_names()
    assert len(declared) > 25 and set(declared) == set(amebo_logging.__all__)
    for name, module in declared.items():
        if module:
            expected = getattr(importlib.import_module(module), name)
        else:  # a submodule
            expected = importlib.import_module(f"amebo_logging.{name}")
        assert getattr(amebo_logging, name) is expected, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_of_ours'"):
        getattr(amebo_logging, "nothing_of_ours")  # noqa: B009
