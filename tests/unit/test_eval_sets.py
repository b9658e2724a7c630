"""The eval sets a run makes from built-in data: the hard in-domain set (evaluate.hard: held-out grounded-qa questions
with same-article unanswerables, disjoint from the run's splits) and the out-of-domain set's bounds (evaluate.ood:
a word window around the answer, a capped history)."""

import json

import pytest

from ssrtune.config.errors import ConfigError
from ssrtune.config.evaluate import HardConfig, OodConfig
from ssrtune.config.run import RecipeDataConfig, load_config
from ssrtune.data.recipes.coqa import conversational_qa, read_coqa
from ssrtune.data.recipes.grounded import REFUSAL
from ssrtune.data.recipes.squad import grounded_qa, hard_grounded_qa, read_squad
from ssrtune.stages import data
from ssrtune.stages.base import Inputs
from ssrtune.stages.suites import judged_suites, suite_judge
from ssrtune.storage.layout import RunLayout
from ssrtune.text import normalise


def _has(text: str, answer: str) -> bool:
    return f" {normalise(answer, drop_articles=False)} " in f" {normalise(text, drop_articles=False)} "


@pytest.mark.parametrize("settings", [
    {"n_train": 300, "n_test": 100, "distractor": "other_article", "document_words": 50},
    {"n_train": 200, "n_test": 60, "holdout": "dev", "seed": 2},
])
def test_the_hard_set_shares_no_question_with_the_splits_and_no_article_with_training(settings):
    config = RecipeDataConfig(**settings)
    train, test = grounded_qa(config)
    hard = hard_grounded_qa(config, HardConfig(n=40, unanswerable_fraction=0.5, seed=1))
    squad = {q["id"]: q for q in read_squad()}
    assert len(hard) == 40 and sum(not r.meta["answerable"] for r in hard) == 20
    asked = {(squad[r.id]["title"], squad[r.id]["question"]) for r in train + test}
    assert not {r.id for r in hard} & {r.id for r in train + test}
    assert not {(squad[r.id]["title"], squad[r.id]["question"]) for r in hard} & asked
    # the held-out split's articles (the test split's, or with holdout: dev the dev split's), never training's
    assert {r.meta["title"] for r in hard} <= {r.meta["title"] for r in test}
    assert not {r.meta["title"] for r in hard} & {r.meta["title"] for r in train}
    paragraphs_of = {}
    for q in squad.values():
        paragraphs_of.setdefault(q["title"], set()).add(q["paragraph"])
    for r in hard:
        q = squad[r.id]
        # documents cut as the task's are (data.document_words): a part of a paragraph
        source = [p for p in paragraphs_of[q["title"]] if r.context in p]
        if r.meta["answerable"]:
            assert q["paragraph"] in source and r.response == q["answers"][0]
            assert any(_has(r.context, a) for a in q["answers"])
        else:  # another paragraph of the same article, holding none of the answers
            assert r.response == REFUSAL and source and q["paragraph"] not in source
            assert not any(_has(p, a) for p in source for a in q["answers"])
    again = hard_grounded_qa(config, HardConfig(n=40, unanswerable_fraction=0.5, seed=1))
    assert [r.model_dump() for r in again] == [r.model_dump() for r in hard]


def test_the_hard_set_is_same_article_whatever_the_tasks_distractor_and_refuses_too_many():
    config = RecipeDataConfig(n_train=300, n_test=100, distractor="other_article")
    title_of = {q["paragraph"]: q["title"] for q in read_squad()}
    hard = hard_grounded_qa(config, HardConfig(n=30, unanswerable_fraction=1.0))
    assert all(title_of[r.context] == r.meta["title"] and not r.meta["answerable"] for r in hard)
    with pytest.raises(ValueError, match=r"evaluate.hard: the held-out articles have \d+ questions the run's splits do "
                                         r"not use, .* too few for n 900"):
        hard_grounded_qa(config, HardConfig(n=900))


def test_the_hard_set_needs_a_recipe_and_is_judged_by_the_tasks_judge_unless_it_has_its_own(tmp_path):
    with pytest.raises(ConfigError, match="evaluate.hard: .*your own data files have none"):
        load_config(None, ["data.recipe=null", "data.train_file=a.jsonl", "data.test_file=b.jsonl",
                           "evaluate.hard={n: 4}"])
    with pytest.raises(ConfigError, match="names must be unique and not one of"):
        load_config(None, ['evaluate.datasets=[{name: hard, file: a.jsonl}]'])
    config = load_config(None, [f"run_dir={tmp_path}", "evaluate.hard={n: 4}", "evaluate.ood={n: 4}",
                                "evaluate.judge={kind: contains}"])
    assert judged_suites(config) == ["task", "hard", "ood"]
    assert suite_judge(config, "hard") == (config.evaluate.judge, "evaluate.judge")
    own = load_config(None, ["evaluate.hard={n: 4, judge: {kind: exact}}"])
    assert suite_judge(own, "hard")[1] == "evaluate.hard.judge"
    assert ("evaluate.hard.judge", own.evaluate.hard.judge) in own.leaf_judges()
    assert judged_suites(load_config(None, [])) == ["task"]


def test_the_hard_sets_fingerprint_holds_its_settings_the_tasks_splits_and_the_system_prompt(tmp_path, monkeypatch):
    def parts(*overrides):
        config = load_config(None, [f"run_dir={tmp_path}", "evaluate.hard={n: 4}", *overrides])
        return data.HardData().parts(Inputs(config, RunLayout(config.path), {}))

    base = parts()
    assert parts("evaluate.hard.n=5") != base and parts("evaluate.hard.seed=1") != base
    assert parts("data.n_test=70") != base and parts("data.document_words=40") != base
    monkeypatch.setattr(data, "RECIPE_SYSTEM", {name: text + " Be brief." for name, text in data.RECIPE_SYSTEM.items()})
    assert parts() != base


def test_ood_windows_hold_the_answer_within_the_word_bound_and_history_is_capped():
    records = conversational_qa(OodConfig(n=60, seed=1, document_words=40, history_turns=2))
    turns = {t["id"]: t for t in read_coqa()}
    stories = {t["story"] for t in turns.values()}
    assert len(records) == 60 and sum(r.meta["answerable"] for r in records) == 30
    for r in records:
        turn = turns[r.id.removesuffix("_swapped")]
        assert len(r.context.split()) <= 40
        assert len(r.messages) <= 1 + 2 * 2 + 1  # system, two earlier turns, the question
        assert [m.content for m in r.messages[1:-1]] == [text for qa in turn["history"][-2:] for text in qa]
        if r.meta["answerable"]:
            assert r.context in turn["story"] and _has(r.context, r.response) and r.response in turn["answers"]
        else:  # a part of the story it was paired with: no answer it lacked comes back
            assert r.response == REFUSAL
            assert r.context in turn["story"] if r.meta["kind"] == "unknown" else any(
                r.context in story for story in stories)
            if r.meta["kind"] == "swapped":
                assert not any(_has(r.context, a) for a in turn["answers"])
    assert conversational_qa(OodConfig(n=60, seed=1, document_words=40, history_turns=2)) == records


def test_ood_history_turns_zero_keeps_only_the_question_and_the_defaults_change_nothing():
    bare = conversational_qa(OodConfig(n=20, seed=4, history_turns=0))
    assert all(len(r.messages) == 2 for r in bare)
    default, explicit = conversational_qa(OodConfig(n=20, seed=4)), conversational_qa(
        OodConfig(n=20, seed=4, document_words=None, history_turns=None))
    turns = {t["id"]: t for t in read_coqa()}
    dumped = [json.dumps(r.model_dump(mode="json")) for r in default]
    assert dumped == [json.dumps(r.model_dump(mode="json")) for r in explicit]
    # the whole story and every earlier turn, as before these settings existed
    for r in default:
        turn = turns[r.id.removesuffix("_swapped")]
        assert len(r.messages) == 2 + 2 * len(turn["history"])
        assert r.context == turn["story"] or r.meta["kind"] == "swapped"
    # a larger window than the story keeps the whole of it
    assert [r.context for r in conversational_qa(OodConfig(n=20, seed=4, document_words=100_000))
            if r.meta["kind"] != "answerable"] == [r.context for r in default if r.meta["kind"] != "answerable"]
