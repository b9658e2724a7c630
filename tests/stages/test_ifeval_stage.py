"""The ifeval retention benchmark in a tiny run: the model answers each sampled prompt through its chat template,
the answers are kept with their verdicts, a second run reuses them, and what decides the result redoes it; a run
naming it without its extra is refused before any work."""

import importlib.util
import json

import pytest

from ssrtune.evaluation import ifeval
from ssrtune.extras import MissingExtraError
from ssrtune.preflight import check_benchmark_extras, check_run
from ssrtune.stages.retention_stages import Benchmark, Retention
from ssrtune.stages.base import Inputs
from ssrtune.storage.layout import RunLayout
from tests.tiny_run import run_stage, stamps

RETENTION = ("evaluate.retention={benchmarks: [ifeval], limit: 3, batch_size: 4, ifeval_max_new_tokens: 4, "
             "kl_prompts: 0}")
RESULT = "eval/base/retention/ifeval.json"


def test_ifeval_answers_are_scored_kept_and_reused(tiny_run):
    config = tiny_run.config(RETENTION)
    retention = run_stage(config, Retention())
    result = json.loads((config.path / RESULT).read_text())
    assert retention["benchmarks"]["ifeval"] == result and result["primary"] == "prompt_level_strict_acc"
    assert result["n"] == 3 and set(ifeval.METRICS) <= set(result) and result["split"] == "train"
    prompts = {p.id: p for p in ifeval.load()}
    for row in result["examples"]:  # each kept answer's verdicts are the scorer's on that answer
        assert row == ifeval.score(prompts[row["id"]], row["response"])
    instructions = sum(len(r["inst_strict"]) for r in result["examples"])
    assert result["inst_level_strict_acc"]["n"] == instructions and result["prompt_level_strict_acc"]["n"] == 3

    before = stamps(config.path, RESULT)
    assert run_stage(config, Retention()) == retention and stamps(config.path, RESULT) == before  # reused

    # the answer length is part of its fingerprint: another redoes it; the prompts' file hash and the scorer's
    # versions are too
    longer = tiny_run.config(RETENTION.replace("ifeval_max_new_tokens: 4", "ifeval_max_new_tokens: 5"))
    parts = Benchmark(benchmark="ifeval").parts(Inputs(longer, RunLayout(longer.path), {}))
    assert parts["ifeval prompts (sha256)"] == ifeval.data_hash() and parts["ifeval scorer"]["if-verifiable"]
    assert parts["evaluate.retention.ifeval_max_new_tokens"] == 5
    run_stage(longer, Retention())
    assert stamps(config.path, RESULT) != before


def test_a_run_naming_ifeval_without_its_extra_is_refused_before_any_work(tiny_run, monkeypatch):
    config = tiny_run.config(RETENTION)
    check_benchmark_extras(config)  # installed here (make install installs the extra)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "if_verifiable" else find_spec(name, *args))
    with pytest.raises(MissingExtraError, match=r"ifeval retention benchmark needs the `ifeval` extra: "
                                                r"pip install 'ssrtune\[ifeval\]'"):
        check_run(config)
    assert not config.path.exists()  # nothing was made
    check_benchmark_extras(tiny_run.config(RETENTION.replace("[ifeval]", "[arc_easy]")))  # not needed there


def test_a_benchmark_of_its_own_limit_samples_that_many_and_keeps_the_others_fingerprints(tiny_run):
    from ssrtune.config.errors import ConfigError

    shared = tiny_run.config("evaluate.retention={benchmarks: [ifeval, arc_easy], limit: 3}")
    own = tiny_run.config("evaluate.retention={benchmarks: [ifeval, arc_easy], limit: 3, limits: {ifeval: 2}}")

    def parts(config, benchmark):
        return Benchmark(benchmark=benchmark).parts(Inputs(config, RunLayout(config.path), {}))

    assert parts(own, "ifeval")["evaluate.retention.limit"] == 2  # its own sample: another result
    assert parts(own, "arc_easy") == parts(shared, "arc_easy")  # the others' results stand
    assert own.evaluate.retention.limit_of("ifeval") == 2 and own.evaluate.retention.limit_of("arc_easy") == 3
    two = tiny_run.config(RETENTION.replace("limit: 3,", "limit: 3, limits: {ifeval: 2},"))
    assert run_stage(two, Retention())["benchmarks"]["ifeval"]["n"] == 2
    with pytest.raises(ConfigError, match="limits.*needs harness: native"):
        tiny_run.config("evaluate.retention={benchmarks: [arc_easy], harness: lm-eval, limits: {arc_easy: 2}}")
    with pytest.raises(ConfigError, match="nosuch"):
        tiny_run.config("evaluate.retention={limits: {nosuch: 2}}")
