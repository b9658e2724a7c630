"""The judge's verdict on every own answer: judgments.jsonl; and the resumable judging loop every verdict file
(own answers, restatements, audits) is written by."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.judges.base import Judge as AnyJudge
from ssrtune.judges.base import JudgeInput, verdict_counts
from ssrtune.judges.factory import build_judge, judge_part
from ssrtune.config.judges import JudgeConfig
from ssrtune.progress import progress_bar
from ssrtune.stages.base import Run, Stage
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint
from ssrtune.storage.artifacts import CacheRule, RecordFile, StaleArtifactError, recorded_fingerprint

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


def verdicts_inputs(run: Run, judge: JudgeConfig, candidates_file: Path) -> Parts:
    """What verdicts on the candidates of `candidates_file` depend on: the judge (settings, prompt templates,
    refusal phrases), the task data and the settings the candidates were made with."""
    return {"judge": judge_part(judge), "data/train.jsonl": Digest(file_digest(run.path / "data" / "train.jsonl")),
            candidates_file.name: Digest(recorded_fingerprint(candidates_file))}


def judge_candidates(run: Run, judge: JudgeConfig, candidates_file: Path, out_path: Path,
                     rule: CacheRule) -> dict[str, dict]:
    """Judge the candidate answers of the RecordFile `candidates_file`, as they are on disk, against the gold.

    The verdicts are cached in `out_path` under `verdicts_inputs`, by the stage's `rule`: rerunning costs nothing,
    and a changed template or input is caught (an answer changed under its verdict too, by the answer hash each
    verdict keeps). The candidates' settings rather than their file: that file only grows under one fingerprint,
    so a verdict stays valid when a resumed generation adds the answers that failed before. An example without a
    candidate gets no verdict.
    """
    records, _ = run(Data())
    out = RecordFile(out_path, verdicts_inputs(run, judge, candidates_file), rule)
    candidates = RecordFile(candidates_file, recorded_fingerprint(candidates_file)).records
    items = [JudgeInput.of(r, candidates[r.id]["response"]) for r in records if r.id in candidates]
    with build_judge(judge) as built:
        judgments = judge_all(built, items, out)
    log.info("%s: %s", out_path.name, verdict_counts(judgments))
    return judgments


class Judge(Stage):
    """Inputs: `verdicts_inputs` of the run's judge on the own answers. Artifact: judgments.jsonl,
    records {id, verdict, rationale, score, candidate_fp}. Resume: the answers
    without a verdict are judged; another judge or other answers are refused (`--fresh` judges again)."""

    name = "judge"

    def needs(self, config: RunConfig) -> list[Stage]:
        return [Data(), Generate()]

    def artifact(self, config: RunConfig) -> Path:
        return config.path / "judgments.jsonl"

    def inputs(self, run: Run) -> Parts:
        return verdicts_inputs(run, run.config.judge, Generate().artifact(run.config))

    def make(self, run: Run) -> dict[str, dict]:
        return judge_candidates(run, run.config.judge, Generate().artifact(run.config), self.artifact(run.config),
                                run.rule(self))

    def describe(self, result: dict[str, dict]) -> str:
        return described_verdicts(result)


def described_verdicts(verdicts: dict[str, dict]) -> str:
    """`200 verdicts: 44 accept, 156 reject, 0 failed`."""
    counts = verdict_counts(verdicts)
    return f"{len(verdicts)} verdicts: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
