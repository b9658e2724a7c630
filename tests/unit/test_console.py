"""The console and the stage timings: durations in words, timings.json adding up a stage's sessions (one of them
killed), and the libraries quieted where they speak while ssrtune's own warnings still show."""

from __future__ import annotations

import json
import os
import time
import warnings

import pytest

from ssrtune.console import apply_quiet, duration, quiet, quiet_libraries
from ssrtune.storage.timings import Timings


@pytest.mark.parametrize("seconds,words", [(0.04, "0.0 s"), (8.24, "8.2 s"), (192, "3 min 12 s"),
                                           (3599.6, "1 h 00 min"), (3840, "1 h 04 min")])
def test_durations_in_words(seconds, words):
    assert duration(seconds) == words


def test_timings_add_up_sessions_and_close_the_one_a_kill_left_open(tmp_path):
    artifact = tmp_path / "generations.jsonl"
    first = Timings(tmp_path)
    started = first.start("generate", artifact)
    artifact.write_text("{}\n")  # the stage writes, then its process is killed: the session stays open
    last_write = time.time() - 0.5
    os.utime(artifact, (last_write, last_write))
    assert json.loads((tmp_path / "timings.json").read_text())["generate"]["running"] == started

    second = Timings(tmp_path)  # the next process
    second.start("generate", artifact)
    time.sleep(0.05)
    seconds = second.end("generate")
    entry = json.loads((tmp_path / "timings.json").read_text())["generate"]
    assert (entry["sessions"], entry["interrupted"]) == (2, 1) and "running" not in entry
    # the killed session counts until the stage last wrote to its artifact
    assert entry["seconds"] == pytest.approx(max(last_write - started, 0) + seconds, abs=2e-3)
    assert entry["started"] < entry["ended"] or entry["started"] == entry["ended"]

    third = Timings(tmp_path)  # a reuse is a session of its own, never interrupted
    third.start("generate", artifact)
    third.end("generate")
    assert json.loads((tmp_path / "timings.json").read_text())["generate"]["sessions"] == 3


def warn_from(module: str, category=FutureWarning) -> None:
    exec("import warnings\nwarnings.warn('noise', category, stacklevel=1)", {"__name__": module, "category": category})


def test_quiet_libraries_filters_their_warnings_only(caplog):  # conftest restores the libraries afterwards
    import logging

    import transformers

    warnings.simplefilter("always")
    quiet_libraries()
    assert quiet() and os.environ["SSRTUNE_QUIET"] == "1"  # the training processes it starts inherit it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_quiet()  # the filters go in front of "always"
        for module in ("transformers.modeling_utils", "trl.trainer.sft_trainer", "torch.distributed", "datasets"):
            warn_from(module)
        warn_from("peft.tuners", UserWarning)
        warn_from("ssrtune.training.trainer")  # ours, or a library's warning about a call of ours: shown
        warn_from("transformersx")  # not a library package by that name
    assert [w.message.args[0] for w in caught] == ["noise", "noise"]
    assert not transformers.utils.logging.is_progress_bar_enabled()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("transformers.trainer").warning("library notice")
        logging.getLogger("ssrtune.stages.data").warning("data: skipped 1 bad train row(s)")
    assert "library notice" not in caplog.text and "skipped 1 bad train row" in caplog.text


def test_ctrl_c_says_how_to_resume_and_counts_the_session_as_interrupted(tiny_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ssrtune.cli import app
    from ssrtune.stages.generate import Generate
    from tests.tiny_run import QUICK_RUN

    def interrupted(self, run):
        raise KeyboardInterrupt

    monkeypatch.setattr(Generate, "make", interrupted)
    result = CliRunner().invoke(app, ["generate", str(tiny_run.file(**QUICK_RUN))])
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == "interrupted: run the same command again to resume where it stopped"
    entry = json.loads((tmp_path / "run" / "timings.json").read_text())["generate"]
    assert (entry["sessions"], entry["interrupted"]) == (1, 1) and "running" not in entry
