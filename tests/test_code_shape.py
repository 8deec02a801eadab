"""The shape of the code (issue #14): no import cycles, no module over 600 lines, no
function over 80 lines. Counted with ast over the package's own source."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports, wherever in the file (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = {t for t in targets if t in known and t != name}
    # Importing a.b.c first imports the packages a and a.b (their __init__ runs), unless
    # they are the importer's own, already being imported: a cycle through a package's
    # re-exporting __init__ is a cycle too.
    mine = _ancestors(name) | {name}
    return found | {a for t in found for a in _ancestors(t)
                    if a in known and a not in mine}


def _ancestors(name: str) -> set[str]:
    """The packages above a dotted module name: a.b.c -> {a, a.b}."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports."""
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    # A package imports its own submodules when its __init__ re-exports; that edge from
    # a parent to its child is not a cycle through the parent unless the child imports it.
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_has_an_edge_to_each_package_an_import_initialises(tmp_path: Path) -> None:
    # pkg/__init__.py re-exports pkg.a, which imports other.b, which imports pkg.c: running
    # pkg's __init__ is part of importing pkg.c, so this is a cycle pkg -> pkg.a -> other.b
    # -> pkg, though no file names `pkg` itself.
    files = {"pkg": ("pkg/__init__.py", "from pkg.a import f\n"),
             "pkg.a": ("pkg/a.py", "from other.b import g\n"),
             "pkg.c": ("pkg/c.py", "h = 1\n"),
             "other": ("other/__init__.py", ""),
             "other.b": ("other/b.py", "from pkg.c import h\n")}
    paths = {}
    for name, (rel, text) in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    known = set(files)
    graph = {name: _imports(name, path, known) for name, path in paths.items()}
    assert graph["other.b"] == {"pkg.c", "pkg"}
    assert graph["pkg.a"] == {"other.b", "other"}
    assert graph["pkg"] == {"pkg.a"}  # pkg is pkg.a's own package: being imported already
    assert find_cycle(graph) == ["other.b", "pkg", "pkg.a", "other.b"]


def test_no_module_is_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                size = (node.end_lineno or node.lineno) - first + 1
                if size > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"] = size
    assert long == {}
