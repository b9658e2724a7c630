"""The shape of the code: modules of one job stay small, and no module imports itself through others."""

import ast
from pathlib import Path
from tests.paths import ROOT

PACKAGE = ROOT / "src" / "ssrtune"
LIMIT = 300  # lines


def modules() -> dict[str, Path]:
    return {".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): f
            for f in PACKAGE.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The ssrtune modules `path` imports, at its top or inside its functions (two modules that need each other
    are one job split in two, even when an import inside a function keeps Python from failing on it); not those
    under TYPE_CHECKING, which never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                 if isinstance(node, ast.ImportFrom) and node.module else [])
        found |= {name for name in names if name in known}
    return found


def test_no_module_is_over_the_limit():
    over = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT}
    assert over == {}


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imports(path, known) for name, path in known.items()}
    for name in graph:  # importing a module imports the packages above it first
        graph[name] |= {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)} - {name}
    for name, path in known.items():  # a package's __init__ re-exporting its own modules is its public face
        if path.name == "__init__.py":
            graph[name] = {dep for dep in graph[name] if not dep.startswith(name + ".")}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in graph[name]:
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [name, dep])}"
            if dep not in state:
                visit(dep, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
