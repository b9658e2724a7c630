"""The package's import structure (test_layout.py checks that it has no import circle): a configuration that imports
nothing heavy (a leaf), and a command line that starts without torch or the stages."""

import ast
import subprocess
import sys

import pytest
from tests.paths import ROOT

SRC = ROOT / "src"


# What the configuration may import, anywhere in config/ (functions included): besides the standard library,
# pydantic and yaml, itself, the registries it checks names against, and small helpers that import nothing heavy.
# The engine registry declares each engine's capabilities and imports no back-end until an engine is built.
CONFIG_MAY_IMPORT = ("pydantic", "pydantic_core", "yaml", "ssrtune.config", "ssrtune.registry", "ssrtune.data.formats",
                     "ssrtune.data.hub", "ssrtune.data.schema", "ssrtune.storage.artifacts", "ssrtune.storage.layout",
                     "ssrtune.inference.engine")


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
