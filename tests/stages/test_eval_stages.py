"""The evaluation's suites as stages: the model under evaluation is loaded once for all of them (before any judge,
and not at all when every suite is current); a changed setting redoes only the suite stages made from it; an old
run's retention is redone whole rather than mixed; --fresh on a model's evaluation redoes its suites."""

import json

import pytest

import ssrtune
from ssrtune.stages import evaluated, held
from ssrtune.stages.base import Run
from ssrtune.stages.evaluate import Evaluate
from ssrtune.storage.artifacts import StaleArtifactError
from tests.tiny_run import record_dicts, stamps

RETENTION = ("evaluate.retention={benchmarks: [arc_easy, gsm8k], limit: 2, batch_size: 4, gsm8k_shots: 1, "
             "gsm8k_max_new_tokens: 4, kl_prompts: 2, kl_max_new_tokens: 4, kl_top_k: 8}")
ANSWERS = ["eval/base/predictions.jsonl", "eval/base/ood.predictions.jsonl", "eval/base/extra.predictions.jsonl"]
BENCHMARKS = ["eval/base/retention/arc_easy.json", "eval/base/retention/gsm8k.json", "eval/base/kl_reference.safetensors"]


@pytest.fixture()
def configure(tiny_run, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()[:3]))

    def configure(*overrides):
        return tiny_run.config("methods=[sft]", "train.batch_size=3", "evaluate.batch_size=4",
                               "evaluate.max_new_tokens=4", "evaluate.judge={kind: token_f1}", "evaluate.ood={n: 3}",
                               RETENTION, f"evaluate.datasets=[{{name: extra, file: {extra}, judge: {{kind: contains}}}}]",
                               *overrides)
    return configure


@pytest.fixture()
def events(monkeypatch):
    """What the evaluation builds and releases, in order: `load <model>`, `close <model>`, `judge <kind>`."""
    told, build_lm, build_judge = [], evaluated.stage_lm, held.build_judge

    def lm(config, settings, adapter=None):
        built, name = build_lm(config, settings, adapter), adapter.name if adapter else "base"
        told.append(f"load {name}")
        close = built.close
        built.close = lambda: (told.append(f"close {name}"), close())
        return built

    def judge(spec):
        told.append(f"judge {spec.kind}")
        return build_judge(spec)

    monkeypatch.setattr(evaluated, "stage_lm", lm)
    monkeypatch.setattr(held, "build_judge", judge)
    return told


def loads(events):
    return [event for event in events if not event.startswith("judge")]


def test_one_load_for_every_suite_and_a_change_redoes_only_what_it_made(configure, events):
    config = configure()
    run = config.path
    results = Run(config)(Evaluate())
    # answered and scored every suite in one load, released before the judges (each built once) were built
    assert events == ["load base", "close base", "judge token_f1", "judge contains"]
    assert set(results) == {"task", "ood", "extra", "retention"}
    assert set(results["retention"]["benchmarks"]) == {"arc_easy", "gsm8k"} and results["retention"]["kl"]["reference"]
    assert json.loads((run / "eval/base/retention.json").read_text()) == results["retention"]

    events.clear()
    before = stamps(run, *ANSWERS, *BENCHMARKS, "eval/base/extra.judgments.jsonl")
    assert Run(config)(Evaluate()) == results and loads(events) == []  # every suite current: no model loaded
    assert stamps(run, *before) == before

    # another task judge: the verdicts of the suites it judges, not the answers, nor the set with a judge of its own
    events.clear()
    judged = stamps(run, "eval/base/task.judgments.jsonl", "eval/base/ood.judgments.jsonl")
    rejudged = Run(configure("evaluate.judge={kind: contains}"))(Evaluate())
    assert loads(events) == [] and stamps(run, *before) == before
    assert all(stamp != judged[path] for path, stamp in stamps(run, *judged).items())
    assert rejudged["task"]["judge"] != results["task"]["judge"] and rejudged["retention"] == results["retention"]

    # another GSM8K setting: that benchmark alone, in one load
    events.clear()
    config = configure("evaluate.judge={kind: contains}", RETENTION.replace("gsm8k_shots: 1", "gsm8k_shots: 0"))
    retained = Run(config)(Evaluate())["retention"]
    assert loads(events) == ["load base", "close base"]
    after = stamps(run, *before)
    assert [path for path in before if after[path] != before[path]] == ["eval/base/retention/gsm8k.json"]
    assert retained["benchmarks"]["arc_easy"] == results["retention"]["benchmarks"]["arc_easy"]

    # a stage command refuses answers made under other settings, naming the commands that redo them
    with pytest.raises(StaleArtifactError, match=r"evaluate.max_new_tokens changed \(4 -> 5\).*`ssrtune evaluate "
                                                 r"c.yaml --model base --fresh` redoes it alone"):
        Run(configure("evaluate.max_new_tokens=5"), command_args="c.yaml")(Evaluate())

    # an earlier version's retention.json (fingerprints inside it, no sidecars) is redone whole, not mixed
    (run / "eval/base/retention/arc_easy.json.meta.json").unlink()
    (run / "eval/base/retention/gsm8k.json.meta.json").unlink()
    (run / "eval/base/kl_reference.safetensors.meta.json").unlink()
    (run / "eval/base/retention.json").write_text(json.dumps(
        {"benchmarks": {"hellaswag": {"fingerprint": "0123", "n": 9, "primary": "acc", "acc": {"value": 1.0}}},
         "kl": {"reference": "0123", "mean_kl": 0.0, "n_prompts": 9}}))
    events.clear()
    redone = Run(config)(Evaluate())["retention"]
    assert loads(events) == ["load base", "close base"]
    assert json.loads((run / "eval/base/retention.json").read_text()) == redone
    assert set(redone["benchmarks"]) == {"arc_easy", "gsm8k"} and redone["kl"] == retained["kl"]


def test_a_trained_models_suites_load_it_once_and_fresh_redoes_them(configure, events):
    config = configure()
    pipe = ssrtune.Pipeline(config)
    results = pipe.evaluate("sft")  # its KL needs the base model's reference, made before the model is loaded
    assert loads(events) == ["load base", "close base", "load sft", "close sft"]
    assert results["retention"]["kl"]["n_prompts"] == 2 and "fingerprint" in results["retention"]["kl"]
    assert not (config.path / "eval/base/task.json").exists()  # the base model's suites are not needed

    events.clear()
    answers = ["eval/sft/predictions.jsonl", "eval/sft/retention/arc_easy.json", "eval/sft/retention/kl.json"]
    before = stamps(config.path, *answers, "eval/base/kl_reference.safetensors")
    again = pipe.evaluate("sft", fresh=True)  # the model's suites redone, not the reference they need
    assert loads(events) == ["load sft", "close sft"]
    after = stamps(config.path, *before)
    assert [path for path in before if after[path] == before[path]] == ["eval/base/kl_reference.safetensors"]
    assert again["task"] == results["task"]
