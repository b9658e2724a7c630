"""Warnings a new user needs in their first hour: a judge that accepts nothing (the method then trains exactly as sft
would) and test examples that are also training examples."""

import json
import logging

from ssrtune.methods import METHODS
from ssrtune.stages.base import Run
from ssrtune.stages.data import Data
from ssrtune.stages.select import Select
from tests.tiny_run import SHORT_ANSWERS, record_dicts


def test_a_judge_that_accepts_no_own_answer_is_said(tiny_run, tmp_path, caplog):
    # a pattern no answer holds: every own answer rejected
    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: regex, pattern: 'x{50}', skip_refusals: false}")
    with caplog.at_level(logging.WARNING):
        rows = Run(config)(Select(METHODS["ssr"]))
    assert {row["source"] for row in rows} == {"gold"}
    assert "select/ssr: the judge accepted no candidate answer" in caplog.text and "judge-audit" in caplog.text

    caplog.clear()
    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: regex, pattern: ''}")  # accepts all
    with caplog.at_level(logging.WARNING):
        rows = Run(config, fresh={"judge"})(Select(METHODS["ssr"]))
    assert {row["source"] for row in rows} == {"self"} and "accepted no candidate" not in caplog.text


def test_test_examples_that_are_training_examples_are_said(tiny_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        Run(tiny_run.config(*SHORT_ANSWERS))(Data())  # the same file for both splits
    assert "data: 6 of the 6 test examples are also training examples" in caplog.text

    held_out = tmp_path / "held_out.jsonl"
    rows = record_dicts()
    held_out.write_text("".join(json.dumps({**r, "id": f"t{i}", "context": r["context"] + " More."}) + "\n"
                                for i, r in enumerate(rows[:2])))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, test = Run(tiny_run.config(*SHORT_ANSWERS, f"data.test_file={held_out}"))(Data())
    assert [r.id for r in test] == ["t0", "t1"] and "also training examples" not in caplog.text
