"""The layout's rules, checked on the import statements of every module of the product.

``core`` never imports Streamlit; ``dashboard`` never imports the Stripe SDK, the Google API
client or ``create_engine``; each SDK is imported by its one adapter; and no module imports,
directly or through others, a module that imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "cli", "dashboard")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import, at any depth, except under
    ``if TYPE_CHECKING:`` (those never run)."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _product_modules() -> dict[str, tuple[Path, list[tuple[str, list[str]]]]]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[name] = (path, _imports(tree, name, path.name == "__init__.py"))
    return modules


MODULES = _product_modules()


def _imported_names(module: str) -> set[str]:
    """Every module ``module`` imports, and ``package.name`` for each name taken from a package."""
    names = set()
    for base, taken in MODULES[module][1]:
        names.add(base)
        names.update(f"{base}.{name}" for name in taken)
    return names


def _importers(predicate) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(
        str(path.relative_to(ROOT))
        for name, (path, _) in MODULES.items()
        if any(predicate(imported) for imported in _imported_names(name))
    )


def _is(prefix: str):  # type: ignore[no-untyped-def]
    return lambda imported: imported == prefix or imported.startswith(prefix + ".")


def test_the_core_never_imports_streamlit():
    assert [p for p in _importers(_is("streamlit")) if p.startswith("core/")] == []


@pytest.mark.parametrize("library", ["stripe", "googleapiclient", "google", "sqlalchemy.create_engine"])
def test_the_dashboard_never_imports_a_provider_sdk_or_builds_an_engine(library):
    assert [p for p in _importers(_is(library)) if p.startswith("dashboard/")] == []


@pytest.mark.parametrize(
    ("library", "adapter"),
    [("stripe", "core/payments/stripe_gateway.py"), ("googleapiclient", "core/email/backends/gmail.py")],
)
def test_each_provider_sdk_is_imported_by_its_one_adapter(library, adapter):
    assert _importers(_is(library)) == [adapter]


def test_create_engine_is_called_in_the_database_module_only():
    assert _importers(_is("sqlalchemy.create_engine")) == ["core/db.py"]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for imported in _imported_names(name):
            if imported in MODULES and imported != name:
                graph[name].add(imported)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_module_imports_itself_back_through_others():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_reader_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from core.payments import stripe_gateway\n")
    assert _imports(tree, "core.x", False) == [("core.payments", ["stripe_gateway"])]
