"""The methods: restating ones end to end on the tiny model (paraphrases / rewrites are resumable, cached
artifacts), and a new method is one class."""

import json

import pytest

from ssrtune.config.run import ConfigError, load_config
from ssrtune.methods import METHODS, OWN_ANSWERS, Method
from ssrtune.data.schema import DataError
from ssrtune.stages.base import Run, trained_models
from ssrtune.stages.data import Data
from ssrtune.stages.judge import Judge
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train
from ssrtune.storage.artifacts import StaleArtifactError, iter_jsonl, read_json
from tests.tiny_run import SHORT_ANSWERS, run_stage


def test_s3ft_sdft_self_only_select(tiny_run, tmp_path):
    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: token_f1, threshold: 0.0}")
    runner = Run(config)
    judgments = runner(Judge())
    assert {j["verdict"] for j in judgments.values()} == {"accept"}  # threshold 0 accepts every own answer
    rows = runner(Select(METHODS["s3ft"]))
    assert {r["source"] for r in rows} == {"self"}
    paraphrases = config.path / "paraphrases.jsonl"
    assert not paraphrases.exists() or not paraphrases.read_text()  # no own answer rejected: nothing to paraphrase

    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: exact}")
    runner = Run(config, fresh={"judge", "restate"})
    records, _ = runner(Data())
    judgments = runner(Judge())
    rows = {m: runner(Select(METHODS[m])) for m in ("s3ft", "sdft", "self_only")}
    paraphrases = list(iter_jsonl(config.path / "paraphrases.jsonl"))
    rejected = {i for i, j in judgments.items() if j["verdict"] != "accept"}
    assert {p["id"] for p in paraphrases} == rejected  # s3ft paraphrases only where the own answer failed
    assert len(list(iter_jsonl(config.path / "rewrites.jsonl"))) == len(records)  # sdft rewrites every answer
    for method, method_rows in rows.items():
        assert len(method_rows) == len(records)
        stored = [json.loads(line) for line in (config.path / "train" / f"{method}.jsonl").read_text().splitlines()]
        assert [r["source"] for r in stored] == [r["source"] for r in method_rows]
        stats = read_json(config.path / "train" / f"{method}.stats.json")
        assert abs(sum(stats["shares"].values()) - 1) < 1e-9
    assert {r["source"] for r in rows["self_only"]} <= {"self", "dropped"}
    assert all(r["target"] is None for r in rows["self_only"] if r["source"] == "dropped")
    assert {r["source"] for r in rows["sdft"]} <= {"rewrite", "gold"}  # sdft's targets are rewrites, not paraphrases
    assert {r["source"] for r in rows["s3ft"]} <= {"self", "paraphrase", "gold"}
    assert read_json(config.path / "train" / "sdft.stats.json")["judge_restated"]["accept"] == sum(
        r["source"] == "rewrite" for r in rows["sdft"])

    # a rerun reuses the restatements and their verdicts; a changed template regenerates them
    before = (config.path / "rewrites.jsonl").stat().st_mtime_ns
    run_stage(config, Select(METHODS["sdft"]))
    assert (config.path / "rewrites.jsonl").stat().st_mtime_ns == before
    template = tmp_path / "rewrite.jinja"
    template.write_text("Say again: {{ gold }}")
    changed = tiny_run.config(*SHORT_ANSWERS, "judge={kind: exact}",
                          f"generate.rewrite_template={template}")
    with pytest.raises(StaleArtifactError, match="rewrites.jsonl"):
        run_stage(changed, Select(METHODS["sdft"]))


@pytest.fixture()
def best_effort(monkeypatch):
    """A method defined by one class: the own answer when accepted, else the gold, like ssr, under another name."""
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS.items()))  # the method is gone after the test

    class BestEffort(Method):
        name = "best_effort"
        candidates = (OWN_ANSWERS,)

    return METHODS["best_effort"]


def test_the_dose_matched_control_with_every_answer_accepted_has_nothing_to_train_on(tiny_run):
    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: token_f1, threshold: 0.0}", "methods=[sft_rejected]")
    runner = Run(config)
    assert {r["source"] for r in runner(Select(METHODS["sft_rejected"]))} == {"dropped"}
    with pytest.raises(DataError, match=r"every example was dropped \(sft_rejected keeps none of them"):
        runner(Train(trained_models(config)[0]))
    assert not (config.path / "models" / "sft_rejected").exists()  # refused before anything was written


def test_a_new_method_is_one_class(best_effort, tiny_run, tmp_path):
    config = tiny_run.config(*SHORT_ANSWERS, "methods=[ssr, best_effort]")
    assert config.methods == ["ssr", "best_effort"]
    runner = Run(config)
    assert runner(Select(best_effort)) == runner(Select(METHODS["ssr"]))
    assert (config.path / "train" / "best_effort.jsonl").exists()
    with pytest.raises(ConfigError, match=r"methods\.1: unknown method 'dpo'; one of: sft, ssr"):
        load_config(None, ["methods=[ssr, dpo]"])
