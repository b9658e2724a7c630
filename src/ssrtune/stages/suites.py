"""The judged suites of a model's evaluation: `task` (the held-out split), `hard` (the hard in-domain set), `ood` (the
out-of-domain set) and one per user eval set (`evaluate.datasets`). Each is three stages: the model's answers, the
judge's verdicts on them and the scores they give; a user set's records are read once per process by a stage of
their own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.evaluate import EvalDataset
from ssrtune.config.judges import JudgeConfig, describe
from ssrtune.config.run import RunConfig
from ssrtune.data.loaders import load_records
from ssrtune.data.prompts import prompt_part
from ssrtune.data.schema import Record
from ssrtune.evaluation.qa_metrics import has_unanswerable, judged_rows, task_metrics
from ssrtune.inference.generation import generate_into
from ssrtune.inference.lm import GenerationFailed
from ssrtune.judges.base import JudgeInput
from ssrtune.judges.factory import judge_part
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.data import Data, HardData, OodData
from ssrtune.stages.evaluated import EvaluationStage
from ssrtune.stages.generate import task_prompts
from ssrtune.stages.judge import described_verdicts, judge_all
from ssrtune.storage.artifacts import recorded_fingerprint, write_json, write_jsonl
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint
from ssrtune.storage.layout import RunLayout


# The eval sets the run makes, by suite (and by their setting in `evaluate`), in the order they are answered
MADE_SETS = {"hard": HardData, "ood": OodData}


def judged_suites(config: RunConfig) -> list[str]:
    """The judged suites' names, in the order they are answered and reported."""
    evaluate = config.evaluate
    return ["task", *(suite for suite in MADE_SETS if getattr(evaluate, suite)),
            *(dataset.name for dataset in evaluate.datasets)]


def eval_set(config: RunConfig, name: str) -> EvalDataset:
    return next(dataset for dataset in config.evaluate.datasets if dataset.name == name)


def suite_judge(config: RunConfig, suite: str) -> tuple[JudgeConfig, str]:
    """The judge of a suite's answers and where the configuration sets it: the suite's own, else the task's."""
    own = (None, "") if suite == "task" else (getattr(config.evaluate, suite).judge, f"evaluate.{suite}.judge") \
        if suite in MADE_SETS else (eval_set(config, suite).judge, f"evaluate.datasets.{suite}.judge")
    return own if own[0] else (config.task_judge, "evaluate.judge" if config.evaluate.judge else "judge")


def records_fingerprint(records: list[Record]) -> str:
    return fingerprint([r.model_dump(mode="json") for r in records])


@dataclass(frozen=True, eq=False)
class EvalSet(Stage):
    """A user eval set's records, read from its file (or the Hub) once per process for every model's suite."""

    dataset: EvalDataset
    name = "data"

    def artifact(self, layout: RunLayout) -> Path:
        return Path(self.dataset.file)

    def make(self, inputs: Inputs) -> list[Record]:
        return load_records(self.dataset.file, self.dataset.fields, format=self.dataset.format)

    def describe(self, result: list[Record]) -> str:
        return f"{len(result)} examples"


@dataclass(frozen=True, eq=False)
class SuiteStage(EvaluationStage):
    """A stage of one judged suite (`suite`) of a model's evaluation; `records` gives the suite's records."""

    suite: str = "task"

    def records(self, config: RunConfig) -> dict[str, Stage]:
        source = Data() if self.suite == "task" else MADE_SETS[self.suite]() if self.suite in MADE_SETS else EvalSet(
            eval_set(config, self.suite))
        return {"records": source}

    def suite_records(self, inputs: Inputs) -> list[Record]:
        return inputs["records"][1] if self.suite == "task" else inputs["records"]  # Data gives (train, test)



@dataclass(frozen=True, eq=False)
class Answers(SuiteStage):
    """The model's greedy answers to the suite's prompts. Inputs: the evaluated model and its engine, the prompts,
    the suite's records, `evaluate.max_new_tokens`. Artifact: eval/<model>/predictions.jsonl for the task,
    <suite>.predictions.jsonl otherwise; records {id, response}. Resume: the records without an answer are
    answered; other inputs are refused (`--fresh` answers again). A server's requests that failed for good stop the
    evaluation (a missing answer can't be scored); rerunning asks for exactly those."""

    kind = "records"

    @property
    def part(self) -> str:
        return self.suite

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {**super().needs(config), **self.records(config)}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.suite_answers(self.subject, self.suite)

    def parts(self, inputs: Inputs) -> Parts:
        config, records = inputs.config, self.suite_records(inputs)
        data = ({"data/test.jsonl": Digest(file_digest(inputs.layout.test_records))} if self.suite == "task" else
                {f"data/{self.suite}.jsonl": Digest(records_fingerprint(records))} if self.suite in MADE_SETS else
                {f"the records of {eval_set(config, self.suite).file}": Digest(records_fingerprint(records))})
        return {**self.evaluated_model(inputs), "prompt": prompt_part(config.model.max_context), **data,
                "evaluate.max_new_tokens": config.evaluate.max_new_tokens}

    def make(self, inputs: Inputs) -> dict[str, dict]:
        config, out, records, settings = inputs.config, inputs.out, self.suite_records(inputs), inputs.config.evaluate
        if len(out) < len(records):
            stage = f"eval/{self.subject}" + ("" if self.suite == "task" else f"/{self.suite}")
            prompts = task_prompts(config, settings.engine, stage, records, reserve=settings.max_new_tokens)
            failures = generate_into(self.lm(inputs), prompts, out, settings.max_new_tokens,
                                     f"evaluate {self.subject} ({self.suite}) ({settings.engine})")
            if failures:
                raise GenerationFailed(f"{out.path}: {len(failures)} of {len(records)} answers failed (first: "
                                       f"{next(iter(failures.values()))}); the others are kept, and rerunning asks "
                                       "again for these")
        return out.records

    def describe(self, result: dict[str, dict]) -> str:
        return f"{len(result)} answers"


@dataclass(frozen=True, eq=False)
class Verdicts(SuiteStage):
    """The suite's judge on the model's answers, against the gold answers. Inputs: the judge (`suite_judge`) and
    the settings the answers were made with. Artifact: eval/<model>/<suite>.judgments.jsonl. Resume: the answers
    without a verdict are judged; another judge or other answers are judged again (evaluation is the end of the
    chain: nothing downstream is lost by redoing them). Any evaluated model is released before the judge is built
    (`Held`): a judge's model may not fit beside it."""

    kind, on_change = "records", "redo"

    @property
    def part(self) -> str:
        return f"{self.suite}/verdicts"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {**self.records(config), "answers": Answers(self.model, self.suite)}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.suite_verdicts(self.subject, self.suite)

    def parts(self, inputs: Inputs) -> Parts:
        answers = inputs.layout.suite_answers(self.subject, self.suite)
        return {"judge": judge_part(*suite_judge(inputs.config, self.suite)),
                answers.name: Digest(recorded_fingerprint(answers))}

    def make(self, inputs: Inputs) -> dict[str, dict]:
        answers = inputs["answers"]
        items = [JudgeInput.of(r, answers[r.id]["response"]) for r in self.suite_records(inputs)]
        return judge_all(inputs.held.judge(suite_judge(inputs.config, self.suite)[0]), items, inputs.out)

    def describe(self, result: dict[str, dict]) -> str:
        return described_verdicts(result)


@dataclass(frozen=True, eq=False)
class Scores(SuiteStage):
    """The suite's metrics from the verdicts: accuracy is the share the judge accepts, with its Wilson interval;
    the grounded-QA metrics are added where the data has unanswerable examples. Artifact (remade every time):
    eval/<model>/task.json and scores.jsonl (the per-example rows) for the task, <suite>.json (rows in `examples`)
    otherwise."""

    @property
    def part(self) -> str:
        return f"{self.suite}/scores"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {**self.records(config), "answers": Answers(self.model, self.suite),
                "verdicts": Verdicts(self.model, self.suite)}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.suite_scores(self.subject, self.suite)

    def make(self, inputs: Inputs) -> dict:
        records, layout = self.suite_records(inputs), inputs.layout
        texts = {r.id: inputs["answers"][r.id]["response"] for r in records}
        grounded = has_unanswerable(records)
        rows = judged_rows(records, texts, inputs["verdicts"], grounded)
        metrics = {**task_metrics(rows, grounded), "judge": describe(suite_judge(inputs.config, self.suite)[0])}
        if self.suite == "task":  # the in-domain suite keeps its layout: task.json + scores.jsonl
            write_jsonl(layout.task_rows(self.subject), rows)
            write_json(self.artifact(layout), metrics)
        else:
            write_json(self.artifact(layout), {**metrics, "examples": rows})
        return metrics

    def describe(self, result: dict) -> str:
        """`accuracy 0.450 [0.310, 0.600] (2 failed verdicts)`."""
        low, high = result["accuracy_ci95"]
        failed = result["verdicts"]["failed"]
        return f"accuracy {result['accuracy']:.3f} [{low:.3f}, {high:.3f}]" + (
            f" ({failed} failed verdicts)" if failed else "")
