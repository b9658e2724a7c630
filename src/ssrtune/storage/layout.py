"""Where everything of a run lives in its directory: the one place that spells the layout. Stages, the report,
export and doctor all ask a `RunLayout`, so a path is written once.

    config.yaml                   the configuration the run was started with
    data/                         train.jsonl, test.jsonl (+ data.meta.json); the eval sets made for the run:
                                  hard.jsonl, ood.jsonl (+ hard.meta.json, ood.meta.json)
    generations.jsonl             the base model's own answers (+ generations.failures.json); judgments.jsonl: the
                                  judge's verdicts on them
    <restatements>.jsonl          a restating method's candidates; <restatements>.judgments.jsonl their verdicts
    train/<method>.jsonl          a method's targets (+ <method>.stats.json)
    models/<name>/                a trained model (finished when ssrtune_train.json exists)
    eval/<model>/                 a model's evaluation (eval/base/: the model before fine-tuning): per judged suite
                                  its answers, verdicts and scores; retention.json, from retention/<part>.json
    truncation.json               what the truncation rule cut from the prompts, per stage
    report.md, timings.json       the report; every stage's wall time
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASE = "base"  # the name of the model before fine-tuning, in eval/<name>/ and in the report
OWN_ANSWERS = "generations"  # the own answers' candidate source, whose verdicts are judgments.jsonl
TRAINED_MARK = "ssrtune_train.json"  # written in models/<name>/ after the weights: the training's result and end


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def provenance(self) -> Path:
        """Optional, written by whoever restores a run (the ledger): model name -> what produced it (commit, CPU, ...)."""
        return self.root / "provenance.json"

    @property
    def train_records(self) -> Path:
        return self.data / "train.jsonl"

    @property
    def test_records(self) -> Path:
        return self.data / "test.jsonl"

    def suite_records(self, suite: str) -> Path:
        """The records of an eval set the run makes (`hard`, `ood`)."""
        return self.data / f"{suite}.jsonl"

    def candidates(self, source: str) -> Path:
        """A candidate source's answers (`generations` for the own answers, or a restatement's name)."""
        return self.root / f"{source}.jsonl"

    @property
    def generation_failures(self) -> Path:
        """The training prompts whose server request failed for good (their examples train on gold)."""
        return self.root / "generations.failures.json"

    def verdicts(self, source: str) -> Path:
        """The judge's verdicts on a candidate source's answers (judgments.jsonl for the own answers)."""
        return self.root / ("judgments.jsonl" if source == OWN_ANSWERS else f"{source}.judgments.jsonl")

    @property
    def audit(self) -> Path:
        """Judge audits: audit/<name>.json and .md, and the verdicts of the judges audited (audit/judgments/)."""
        return self.root / "audit"

    def audit_verdicts(self, source: str, judge: str) -> Path:
        """The verdicts of an audited judge (by its fingerprint) on a candidate source's answers."""
        return self.audit / "judgments" / (f"{judge}.jsonl" if source == OWN_ANSWERS else f"{source}.{judge}.jsonl")

    def targets(self, method: str) -> Path:
        return self.root / "train" / f"{method}.jsonl"

    def target_stats(self, method: str) -> Path:
        return self.targets(method).with_suffix(".stats.json")

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_folder(self, name: str) -> Path:
        return self.models / name

    def trained(self, name: str) -> Path:
        """A trained model's result file, present once its training finished."""
        return self.model_folder(name) / TRAINED_MARK

    def evaluation(self, model: str) -> Path:
        return self.root / "eval" / model

    def suite_answers(self, model: str, suite: str) -> Path:
        """A model's answers to a judged suite: predictions.jsonl for the task, <suite>.predictions.jsonl otherwise."""
        return self.evaluation(model) / ("predictions.jsonl" if suite == "task" else f"{suite}.predictions.jsonl")

    def suite_verdicts(self, model: str, suite: str) -> Path:
        return self.evaluation(model) / f"{suite}.judgments.jsonl"

    def suite_scores(self, model: str, suite: str) -> Path:
        """A judged suite's metrics; the task's per-example rows are beside them (`task_rows`), another suite's in
        them."""
        return self.evaluation(model) / f"{suite}.json"

    def task_rows(self, model: str) -> Path:
        return self.evaluation(model) / "scores.jsonl"

    def retention(self, model: str) -> Path:
        return self.evaluation(model) / "retention.json"

    def retention_part(self, model: str, part: str) -> Path:
        """One result retention.json gathers: a benchmark's, the harness's (`lm-eval`), a trained model's KL."""
        return self.evaluation(model) / "retention" / f"{part}.json"

    @property
    def kl_reference(self) -> Path:
        """The base model's responses and next-token distributions every other model's KL is measured against."""
        return self.evaluation(BASE) / "kl_reference.safetensors"

    @property
    def truncation(self) -> Path:
        """What the one truncation rule cut from the prompts, per stage."""
        return self.root / "truncation.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"
