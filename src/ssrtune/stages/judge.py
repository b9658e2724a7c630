"""The judge's verdict on every answer of a candidate source (judgments.jsonl for the own answers); and the
resumable judging loop every verdict file (candidates, evaluations, audits) is written by."""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.judges.base import Judge as AnyJudge
from ssrtune.judges.base import JudgeInput, verdict_counts
from ssrtune.judges.factory import build_judge, judge_fingerprint, judge_part
from ssrtune.config.judges import JudgeConfig
from ssrtune.progress import progress_bar
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint
from ssrtune.storage.artifacts import RecordFile, StaleArtifactError, recorded_fingerprint
from ssrtune.storage.layout import RunLayout

log = logging.getLogger(__name__)

def judge_all(judge: AnyJudge, items: list[JudgeInput], out: RecordFile, batch_size: int | None = None
              ) -> dict[str, dict]:
    """Judge every item not yet in `out`, appending verdicts batch by batch (`batch_size`, by default the judge's
    own: an llm judge's `batch_size`), so an interrupted judge loses at most one batch; returns all records of
    `out`."""
    # Each verdict keeps a hash of the answer it judged: answers added by a resumed generation are judged, but an
    # answer that changed under a verdict is refused rather than silently kept.
    changed = [item.id for item in items if item.id in out
               and out.records[item.id].get("candidate_fp", fingerprint(item.candidate)) != fingerprint(item.candidate)]
    if changed:
        raise StaleArtifactError(f"{out.path}: {len(changed)} answers changed since they were judged (e.g. "
                                 f"{changed[0]!r}); rerun with --fresh to judge them again")
    todo = [item for item in items if item.id not in out]
    if not todo:
        return out.records
    batch_size = batch_size or judge.batch_size
    with progress_bar(f"judge ({out.path.name})") as bar:
        task = bar.add_task("judge", total=len(items), completed=len(items) - len(todo), rate="")
        for start in range(0, len(todo), batch_size):
            batch = todo[start: start + batch_size]
            out.append({"id": item.id, **asdict(j), "candidate_fp": fingerprint(item.candidate)}
                       for item, j in zip(batch, judge.judge(batch)))
            bar.update(task, advance=len(batch))
    return out.records


def verdicts_inputs(config: RunConfig, judge: JudgeConfig, candidates_file: Path) -> Parts:
    """What verdicts on the candidates of `candidates_file` depend on: the judge (settings, prompt templates,
    refusal phrases), the task data and the settings the candidates were made with (not the candidates' file: it
    only grows under one fingerprint, so a verdict stays valid when a resumed generation adds the answers that
    failed before; an answer changed under its verdict is caught by the answer hash each verdict keeps)."""
    train = RunLayout(config.path).train_records
    return {"judge": judge_part(judge), "data/train.jsonl": Digest(file_digest(train)),
            candidates_file.name: Digest(recorded_fingerprint(candidates_file))}


@dataclass(frozen=True, eq=False)
class Judge(Stage):
    """A judge on the answers of a candidate stage (by default the own answers), against the gold answers: the run's
    judge, or another one (`judge`: a judge audit's), whose verdicts are kept apart under audit/judgments/.

    Inputs: `verdicts_inputs`. Artifact: judgments.jsonl for the own answers, <source>.judgments.jsonl for another
    source; records {id, verdict, rationale, score, candidate_fp}, keyed like the candidates (a candidate answers
    the example its record names, `example`, by default its own id). Resume: the answers without a verdict are
    judged; another judge or other answers are refused (`--fresh` judges again)."""

    candidates: Stage = Generate()
    judge: JudgeConfig | None = None  # None: the run's judge
    name = "judge"
    kind = "records"

    @functools.cached_property
    def audited(self) -> str | None:
        """The audited judge's fingerprint (None: the run's judge); once per stage, as it reads the judge's
        templates and the stage's key is asked for at every step of the run."""
        return None if self.judge is None else judge_fingerprint(self.judge)

    @property
    def subject(self) -> str | None:
        source = None if self.candidates == Generate() else self.candidates.source.name
        return "/".join(filter(None, [source, self.audited and f"audit-{self.audited}"])) or None

    def spec(self, config: RunConfig) -> JudgeConfig:
        return config.judge if self.judge is None else self.judge

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {"data": Data(), "candidates": self.candidates}

    def artifact(self, layout: RunLayout) -> Path:
        if self.judge is None:
            return layout.verdicts(self.candidates.source.name)
        return layout.audit_verdicts(self.candidates.source.name, self.audited)

    def parts(self, inputs: Inputs) -> Parts:
        return verdicts_inputs(inputs.config, self.spec(inputs.config), self.candidates.artifact(inputs.layout))

    def make(self, inputs: Inputs) -> dict[str, dict]:
        records, _ = inputs["data"]
        by_id = {r.id: r for r in records}
        items = [JudgeInput.of(by_id[answer.get("example", key)], answer["response"], key)
                 for key, answer in inputs["candidates"].items() if answer.get("example", key) in by_id]
        with build_judge(self.spec(inputs.config)) as built:
            judgments = judge_all(built, items, inputs.out)
        log.info("%s: %s", inputs.out.path.name, verdict_counts(judgments))
        return judgments

    def describe(self, result: dict[str, dict]) -> str:
        return described_verdicts(result)


def described_verdicts(verdicts: dict[str, dict]) -> str:
    """`200 verdicts: 44 accept, 156 reject, 0 failed`."""
    counts = verdict_counts(verdicts)
    return f"{len(verdicts)} verdicts: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
