"""A fine-tuned model: models/<name>/ (a PEFT adapter or full weights, and the trainer's state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssrtune.config import RunConfig
from ssrtune.data.schema import DataError
from ssrtune.distributed import train_method
from ssrtune.methods import trained_rows
from ssrtune.models import model_fingerprint
from ssrtune.placement import training_placement
from ssrtune.stages.base import Run, Stage, TrainedModel
from ssrtune.stages.select import Select
from ssrtune.store import Artifact, file_digest, fingerprint, write_json

DONE = "ssrtune_train.json"  # written after the weights: the training's result, and the mark that it finished


@dataclass(frozen=True, eq=False)
class Train(Stage):
    """Fingerprint: the model, the `train` section (less how the training runs: `TrainConfig.EXECUTION_ONLY`), the
    precision it trains in on this machine (`placement.training_placement`) and train/<method>.jsonl. Artifact:
    models/<name>/, finished when ssrtune_train.json exists; its fingerprint is in ssrtune_fingerprint.json. Resume: an unfinished training resumes from its last complete checkpoint; other
    inputs are refused (`--fresh` trains again from scratch)."""

    model: TrainedModel
    name = "train"

    def needs(self, config: RunConfig) -> list[Stage]:
        return [Select(self.model.method)]

    def artifact(self, config: RunConfig) -> Path:
        return config.path / "models" / self.model.name

    def fingerprint(self, run: Run) -> str:
        config = run.config
        return fingerprint(model_fingerprint(config.model), config.train.fingerprint_settings(),
                           training_placement(config.model, config.train).precision,
                           file_digest(Select(self.model.method).artifact(config)))

    def make(self, run: Run) -> Path:
        config, output_dir = run.config, self.artifact(run.config)
        rows_file = Select(self.model.method).artifact(config)
        cache = Artifact(output_dir, output_dir / "ssrtune_fingerprint.json", self.fingerprint(run), "refuse",
                         fresh=run.fresh(self))
        cache.check()
        if (output_dir / DONE).exists():
            return output_dir
        kept = trained_rows(run(Select(self.model.method)))
        if not kept:
            raise DataError(rows_file, None, None,
                            "every example was dropped (the judge accepted no own answer): nothing to train on")
        cache.record()
        result = train_method(config, rows_file, output_dir)
        write_json(output_dir / DONE, result)
        return output_dir
