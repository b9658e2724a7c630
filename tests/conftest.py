"""Shared fixtures: the tiny run of tests/tiny_run.py (a tiny random Llama built here, never downloaded, and the six
test records), a clean environment per test, the fake OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_run import TinyRun, build_tiny_model, write_records


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def records_file(tmp_path) -> Path:
    return write_records(tmp_path / "records.jsonl")


@pytest.fixture()
def tiny_run(tmp_path, tiny_model, records_file) -> TinyRun:
    """The tiny model's run on the six records in tmp_path/run (see `TinyRun`)."""
    return TinyRun(tmp_path, tiny_model, records_file)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never write to the user's cache, except the integration tests, which opt back in.
    monkeypatch.setenv("SSRTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _libraries_not_quieted(monkeypatch):
    # A command line run in a test's process quiets the libraries (console.quiet_libraries: the environment, their
    # loggers and progress bars; pytest restores warning filters itself): each test starts as a library user would.
    import logging

    import datasets
    import transformers

    from ssrtune.console import LIBRARIES

    monkeypatch.setenv("SSRTUNE_QUIET", "0")
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    bars = transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.enable_progress_bar() if bars[0] else transformers.utils.logging.disable_progress_bar()
    datasets.enable_progress_bars() if bars[1] else datasets.disable_progress_bars()


@pytest.fixture()
def fake_openai():
    """A fake OpenAI-compatible server on 127.0.0.1 (see tests/fake_openai.py), stopped at the test's end."""
    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI()
    yield server
    server.stop()
