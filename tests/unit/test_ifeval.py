"""The IFEval benchmark: the packaged prompts are the published file, the checks (if-verifiable's) score hand-made
answers to hand-computed strict and loose, prompt- and instruction-level values offline, and the report pairs a
model's prompts with the base model's like any benchmark's documents."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from ssrtune.evaluation import ifeval
from ssrtune.evaluation.benchmarks import BENCHMARKS, stratified_sample
from ssrtune.inference.lm import GenerationFailed
from ssrtune.report.analysis import benchmark_summary
from ssrtune.report.comparison import benchmark_values
from ssrtune.report.results import Model, _retention

LOWERCASE = ifeval.IfEvalPrompt("1", "Write to a friend in all lowercase letters.", ["change_case:english_lowercase"],
                                [{}])
NO_COMMA = ifeval.IfEvalPrompt("2", "Answer without commas.", ["punctuation:no_comma"], [{}])
TWO = ifeval.IfEvalPrompt("3", "No commas, and mention apple.", ["punctuation:no_comma", "keywords:existence"],
                          [{}, {"keywords": ["apple"]}])
LETTER = "this is a short letter to my dear friend, asking them to go and vote in the election next week."


def test_the_packaged_prompts_are_the_published_file():
    readme = (ifeval.DATA_FILE.parent / "README.md").read_text(encoding="utf-8")
    assert hashlib.sha256(ifeval.DATA_FILE.read_bytes()).hexdigest() == ifeval.data_hash() \
        == re.search(r"sha256 `([0-9a-f]{64})`", readme)[1]
    prompts = ifeval.load()
    assert len(prompts) == 541 and len({p.id for p in prompts}) == 541
    assert sum(len(p.instruction_id_list) for p in prompts) == 834
    assert "Apache License" in (ifeval.DATA_FILE.parent / "LICENSE").read_text(encoding="utf-8")
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    assert {i for p in prompts for i in p.instruction_id_list} <= set(INSTRUCTION_DICT)
    # the seeded sample keeps the mix of instruction kinds and is the same every time
    sample = stratified_sample(BENCHMARKS["ifeval"].load(), 150, seed=0)
    assert len(sample) == 150 and sample == stratified_sample(prompts, 150, seed=0)
    assert {p.stratum for p in sample} == {p.stratum for p in prompts}


def test_strict_and_loose_prompt_and_instruction_level_on_hand_made_answers():
    followed = ifeval.score(LOWERCASE, LETTER)
    broken = ifeval.score(LOWERCASE, LETTER.capitalize())
    assert followed["inst_strict"] == [True] and broken["inst_strict"] == broken["inst_loose"] == [False]
    # a comma in the first line only: strict fails, loose (first line dropped) passes
    loose_only = ifeval.score(NO_COMMA, "Well, here it is\nno commas in this answer")
    assert loose_only["inst_strict"] == [False] and loose_only["inst_loose"] == [True]
    assert (loose_only["prompt_level_strict_acc"], loose_only["prompt_level_loose_acc"]) == (False, True)
    half = ifeval.score(TWO, "I like pears")
    assert half["inst_strict"] == half["inst_loose"] == [True, False] and not half["prompt_level_loose_acc"]
    assert ifeval.score(TWO, "I like apple pie")["prompt_level_strict_acc"]
    empty = ifeval.score(TWO, "  ")  # fails every instruction, and counts every one
    assert empty["inst_strict"] == empty["inst_loose"] == [False, False]

    summary = ifeval.summarise([followed, loose_only, half])
    assert summary["prompt_level_strict_acc"]["value"] == pytest.approx(1 / 3)  # [T] [F] [T, F]
    assert summary["prompt_level_loose_acc"]["value"] == pytest.approx(2 / 3)   # [T] [T] [T, F]
    assert summary["inst_level_strict_acc"]["value"] == pytest.approx(2 / 4)
    assert summary["inst_level_loose_acc"]["value"] == pytest.approx(3 / 4)
    assert summary["inst_level_strict_acc"]["n"] == 4 and summary["prompt_level_strict_acc"]["n"] == 3


def test_the_sentence_checks_use_the_packaged_punkt_model(tmp_path):
    root = ifeval.punkt_data(tmp_path / "nltk_data")
    folder = root / "tokenizers/punkt_tab/english"
    assert sorted(p.name for p in folder.iterdir()) == ["abbrev_types.txt", "collocations.tab", "ortho_context.tab",
                                                       "sent_starters.txt"]
    assert "dr" in (folder / "abbrev_types.txt").read_text(encoding="utf-8").split("\n")
    assert ifeval.punkt_data(root) == root  # written once: a whole model is kept
    sentences = ifeval.IfEvalPrompt("4", "At most two sentences.", ["length_constraints:number_sentences"],
                                    [{"relation": "less than", "num_sentences": 3}])
    # "Dr." is an abbreviation in the model: two sentences, not three
    assert ifeval.score(sentences, "Dr. Smith came home. He slept.")["inst_strict"] == [True]
    assert ifeval.score(sentences, "One came. Two came. Three came.")["inst_strict"] == [False]
    from ssrtune.models.loading import cache_dir
    assert (cache_dir() / "nltk_data/tokenizers/punkt_tab/english/ortho_context.tab").exists()  # NLTK read it there


def _model(name: str, rows: list[dict], base: Model | None = None) -> Model:
    summary = ifeval.summarise(rows)
    retention = {"benchmarks": {"ifeval": {"n": len(rows), "primary": "prompt_level_strict_acc", **summary,
                                           "examples": rows}}}
    return Model(label=name, name=name, run=Path("run"), retention=retention, base=base)


def test_the_change_against_the_base_is_paired_by_prompt(tmp_path):
    answers = {"1": (LETTER, LETTER.capitalize()), "2": ("no commas", "a, b"), "3": ("apple", "apple"),
               "4": ("Hi, there", "Hi, there")}
    prompts = {"1": LOWERCASE, "2": NO_COMMA, "3": TWO,
               "4": ifeval.IfEvalPrompt("4", "No commas either.", ["punctuation:no_comma"], [{}])}
    base = _model("base", [ifeval.score(prompts[i], a) for i, (a, _) in answers.items()])
    # the trained model's rows in another order: pairing is by prompt id, not position
    model = _model("sft", [ifeval.score(prompts[i], b) for i, (_, b) in reversed(answers.items())], base)
    assert benchmark_values(model, "ifeval", "gold_ll") == {}  # no gold answers, no gold log-likelihood
    change = benchmark_summary(model, "ifeval")
    # the base follows prompts 1, 2 and 3 (3/4), the model only 3 (1/4): two prompts lost
    assert change["change"]["diff"] == pytest.approx(-2 / 4) and change["change"]["lost"] == 2
    assert change["change"]["gained"] == 0 and change["change"]["n"] == 4 and "gold_ll_change" not in change
    assert change["relative_change"] == pytest.approx(-2 / 3)

    path = tmp_path / "retention.json"
    path.write_text(json.dumps(model.retention))
    assert _retention(path)["benchmarks"]["ifeval"]["n"] == 4  # read without gold_ll, each row's metric checked


class Answers:
    """An engine that gives canned answers and records what it was asked."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def generate(self, prompts, max_new_tokens, stop=(), *, batch_size=None, description=None):
        self.asked.append((prompts, max_new_tokens, tuple(stop), batch_size))
        return self.answers


def test_each_prompt_is_the_user_turn_of_a_chat_answered_greedily_and_scored_as_generated():
    lm = Answers([" " + LETTER, GenerationFailed("server gave up")])
    with pytest.raises(GenerationFailed, match="1 of 2 answers failed"):
        ifeval.ifeval(lm, [LOWERCASE, NO_COMMA], max_new_tokens=7, batch_size=2)
    chats = [[{"role": "user", "content": LOWERCASE.prompt}], [{"role": "user", "content": NO_COMMA.prompt}]]
    assert lm.asked == [(chats, 7, (), 2)]  # no stop string, the configured length and batch
    rows = ifeval.ifeval(Answers([" " + LETTER, "a, b"]), [LOWERCASE, NO_COMMA], max_new_tokens=7, batch_size=2)
    assert [r["response"] for r in rows] == [" " + LETTER, "a, b"]
    assert [r["prompt_level_strict_acc"] for r in rows] == [True, False]


def test_the_report_shows_ifeval_beside_the_other_benchmarks(tmp_path, capsys):
    from ssrtune.report import write_report
    from ssrtune.storage.artifacts import read_json, write_json
    from tests.synthetic_runs import make_run, table

    run = make_run(tmp_path)
    answers = {"base": (LETTER, "no commas"), "sft": (LETTER.capitalize(), "a, b"), "ssr": (LETTER, "no commas")}
    for model, (letter, reply) in answers.items():
        path = run / "eval" / model / "retention.json"
        result = read_json(path)
        rows = [ifeval.score(LOWERCASE, letter), ifeval.score(NO_COMMA, reply)]
        result["benchmarks"]["ifeval"] = _model(model, rows).retention["benchmarks"]["ifeval"]
        write_json(path, result)
    write_report(run)
    md = (run / "report.md").read_text()
    paired = "\n".join(table(md, "Paired comparison against the base model"))
    # sft lost both prompts: -100 points over 2 prompts; no gold answers, so no gold log-likelihood change ("-")
    assert "| sft | ifeval | -100.0 pts [-100.0, -100.0] | resolved | 0 | 2 | - |" in paired
    assert "| ssr | ifeval | +0.0 pts [+0.0, +0.0] | unresolved | 0 | 0 | - |" in paired
    retention = "\n".join(table(md, "Retention of general ability"))
    assert "| ifeval | prompt_level_strict_acc | 2 | 1.000" in retention
    report = read_json(run / "report.json")
    assert report["models"][1]["retention"]["ifeval"]["change"]["diff"] == -1.0
    assert "ifeval: gold log-lik" not in md and "ifeval: prompt_level_strict_acc" in md  # ssr against sft
    # the mean change of the gold log-likelihood is over the benchmarks that have gold answers, and says so
    assert report["models"][1]["gold_ll_change"]["benchmarks"] == 2
    assert "mean over arc_easy, hellaswag." in capsys.readouterr().out.replace("\n", " ")
