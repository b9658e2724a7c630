"""The package's import structure: no import circle, a configuration that imports nothing heavy (a leaf), and a
command line that starts without torch or the stages."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules(src: Path) -> dict[str, Path]:
    """Every module under `src`, by its dotted name (a package by its own name, for its __init__.py)."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if _lazy.TYPE_CHECKING:`: imports for type checkers only, never run."""
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that `name` imports when it is imported: its module-level imports (in if/try blocks
    too), not those inside functions or under TYPE_CHECKING. `from a import b` imports a.b when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
            elif isinstance(node, ast.If) and not _type_checking(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    visit(block)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {module for module in found if module in modules and module != name}


def import_cycle(src: Path) -> list[str] | None:
    """A circle of module-level imports among the modules under `src` (its first module repeated at its end), or
    None."""
    modules = _modules(src)
    graph = {name: sorted(_imported(name, path, modules)) for name, path in modules.items()}
    done: set[str] = set()  # modules no circle goes through

    def circle_from(module: str, chain: list[str]) -> list[str] | None:
        if module in chain:
            return chain[chain.index(module):] + [module]
        if module in done:
            return None
        for child in graph[module]:
            if cycle := circle_from(child, [*chain, module]):
                return cycle
        done.add(module)
        return None

    return next(filter(None, (circle_from(module, []) for module in graph)), None)


def test_no_import_circle_in_ssrtune():
    cycle = import_cycle(SRC)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_a_circle_and_ignores_deferred_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\n"
                                  "def f():\n    from pkg.a import x\n")
    assert import_cycle(tmp_path) is None
    (package / "b.py").write_text("try:\n    from pkg.c import y\nexcept ImportError:\n    pass\n")
    (package / "c.py").write_text("from . import a\n")
    assert import_cycle(tmp_path) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


# What the configuration may import, anywhere in config/ (functions included): besides the standard library,
# pydantic and yaml, itself, the registries it checks names against, and small helpers that import nothing heavy.
CONFIG_MAY_IMPORT = ("pydantic", "pydantic_core", "yaml", "ssrtune.config", "ssrtune.registry", "ssrtune.data.formats",
                     "ssrtune.data.hub", "ssrtune.data.schema", "ssrtune.storage.artifacts")


def test_the_configuration_imports_only_leaves():
    outside = set()
    for path in (SRC / "ssrtune" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
            outside.update(f"{path.name}: {name}" for name in names if name.split(".")[0] not in sys.stdlib_module_names
                           and not any(name == ok or name.startswith(f"{ok}.") for ok in CONFIG_MAY_IMPORT))
    assert sorted(outside) == []


def _loaded_by(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules in (or named by) `prefixes` that importing `module` in a fresh interpreter loads."""
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return sorted(m for m in loaded if any(m == prefix or m.startswith(f"{prefix}.") for prefix in prefixes))


HEAVY = ("torch", "transformers")


@pytest.mark.parametrize("module,forbidden", [
    ("ssrtune.config.run", ("ssrtune.stages", "ssrtune.methods", "ssrtune.data.loaders", *HEAVY)),
    ("ssrtune.cli", ("ssrtune.stages", *HEAVY)),
])
def test_a_module_imports_nothing_heavy(module, forbidden):
    """The configuration is a leaf; the command line imports the stages and torch in the commands that run them."""
    assert _loaded_by(module, forbidden) == []
