"""The import graph of relink_lib has no cycles, and the configuration sits at its bottom.

Every module is parsed with ``ast`` (nothing is imported). An edge ``a -> b`` is an import of ``b``
by ``a`` within relink_lib: ``import relink_lib.b``, ``from .b import x``, ``from . import b``
(``b`` a module) and the packages such an import runs on the way (``from .dp.config import x``
also runs ``relink_lib/dp/__init__.py``). Imports under ``if TYPE_CHECKING:`` never run and are
left out. A cycle of module-level imports breaks an import order; a cycle closed by an import
inside a function is the same dependency circle, hidden: both are refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import relink_lib

PACKAGE = Path(relink_lib.__file__).resolve().parent
ROOT = PACKAGE.name


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], *, nested: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run: at module level (in ``if`` / ``try`` blocks too), and with
    ``nested`` those inside functions and classes as well; never those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                found += _import_nodes(node.body, nested=nested) + _import_nodes(node.orelse, nested=nested)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _import_nodes(block, nested=nested)
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            found += _import_nodes(node.body, nested=nested)
        elif nested and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found += _import_nodes(node.body, nested=nested)
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Dotted names an import statement may load (modules, or names within modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph(package: Path = PACKAGE, *, nested: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (and the packages those imports run)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        deps: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(), str(path)).body, nested=nested):
            for target in _targets(module, is_package, node):
                if target not in modules or target == module:
                    continue
                deps.add(target)
                parts = target.split(".")
                for i in range(2, len(parts)):  # the packages the import runs, except those enclosing `module`
                    package = ".".join(parts[:i])
                    if package in modules and not (module == package or module.startswith(package + ".")):
                        deps.add(package)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(graph: dict[str, set[str]], found: list[list[str]]) -> str:
    return "; ".join(", ".join(f"{m} -> {sorted(graph[m] & set(component))}" for m in component) for component in found)


def test_the_checker_finds_the_cycles_it_is_for(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    files = {  # the three circles issue 21 removed, in miniature
        "__init__.py": "",
        "config.py": "from .dp.config import DPConfig\nfrom .numerics import MODES\n",
        "numerics.py": "MODES = {}\ndef mode_of(p):\n    from .config import as_profile\n",
        "dp/__init__.py": "from .config import DPConfig\nfrom .train import train_heads\n",
        "dp/config.py": "DPConfig = object\n",
        "dp/train.py": "from ..config import SECTIONS\n",
        "cli.py": "from .pipeline.shards import add_arguments\n",
        "pipeline/__init__.py": "",
        "pipeline/shards.py": "def run():\n    from .. import features\n",
        "features.py": "import sys\ndef main():\n    from .cli import main\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph["pkg.config"] == {"pkg.dp", "pkg.dp.config", "pkg.numerics"}  # dp/__init__ runs too
    assert cycles(graph) == [["pkg.config", "pkg.dp", "pkg.dp.train"]]
    assert cycles(import_graph(tmp_path / "pkg", nested=True)) == [
        ["pkg.cli", "pkg.features", "pkg.pipeline.shards"],
        ["pkg.config", "pkg.dp", "pkg.dp.train", "pkg.numerics"],
    ]


def test_module_level_imports_have_no_cycle():
    graph = import_graph()
    assert f"{ROOT}.config" in graph and len(graph) > 20
    found = cycles(graph)
    assert not found, f"import cycles among module-level imports: {_describe(graph, found)}"


def test_no_cycle_is_hidden_in_a_function_level_import():
    graph = import_graph(nested=True)
    found = cycles(graph)
    assert not found, f"import cycles closed by imports inside functions: {_describe(graph, found)}"


def test_config_imports_nothing_from_the_package():
    """relink_lib.config is the bottom of the graph: every module may import it, it imports none of them."""
    path = PACKAGE / "config.py"
    tree = ast.parse(path.read_text(), str(path))
    inside = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == ROOT))
        or (isinstance(node, ast.Import) and any(a.name.split(".")[0] == ROOT for a in node.names))
    ]
    assert not inside, f"relink_lib/config.py imports from {ROOT}: {inside}"
    assert import_graph(nested=True)[f"{ROOT}.config"] == set()


def test_numerics_depends_on_config_one_way():
    graph = import_graph(nested=True)
    assert f"{ROOT}.config" in graph[f"{ROOT}.numerics"]
    assert f"{ROOT}.numerics" not in graph[f"{ROOT}.config"]
    assert not any(m.startswith(f"{ROOT}.cli") for m in graph[f"{ROOT}.features"])
