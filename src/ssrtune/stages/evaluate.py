"""A model's evaluation (the base model's or a fine-tuned one's), written to eval/<model>/: its judged suites
(`stages.suites`: the held-out split, the hard in-domain set, the out-of-domain set, the user's eval sets) and retention
(`stages.retention_stages`: benchmarks and the KL from the base model), each a stage of its own that the run caches;
this stage gathers their results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.evaluated import EvaluationStage
from ssrtune.stages.retention_stages import KlReference, Retention
from ssrtune.stages.suites import Answers, Scores, judged_suites
from ssrtune.storage.layout import RunLayout


@dataclass(frozen=True, eq=False)
class Evaluate(EvaluationStage):
    """Every suite's results, by suite (`{"task": metrics, ..., "retention": {...}}`); remade from the suites'
    stages, which are ordered so that the model under evaluation (loaded once, and only if some suite has work
    left) answers every suite and scores every benchmark before any judge is built: the judge's model may not fit
    beside it (`Held`). A trained model's KL needs the base model's reference, made first, for the same reason.
    Artifact: eval/<model>/."""

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        retention = config.evaluate.retention
        suites = judged_suites(config)
        reference = {"kl reference": KlReference()} if self.model and retention and retention.kl_prompts else {}
        return {**reference, **{f"{suite} answers": Answers(self.model, suite) for suite in suites},
                **({"retention": Retention(self.model)} if retention else {}),
                **{suite: Scores(self.model, suite) for suite in suites}}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.evaluation(self.subject)

    def make(self, inputs: Inputs) -> dict:
        retention = ["retention"] if inputs.config.evaluate.retention else []
        return {suite: inputs[suite] for suite in [*judged_suites(inputs.config), *retention]}

    def describe(self, result: dict) -> str:
        """`task accuracy 0.450 [0.310, 0.600]; ood accuracy 0.300 [...]; hellaswag acc_norm 0.412, KL from base
        0.0123`."""
        return "; ".join(Retention(self.model).describe(r) if suite == "retention" else
                         f"{suite} {Scores(self.model, suite).describe(r)}" for suite, r in result.items())
