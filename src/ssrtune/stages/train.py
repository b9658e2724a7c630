"""A fine-tuned model: models/<name>/ (a PEFT adapter or full weights, and the trainer's state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssrtune.training.checkpoints import remove_checkpoints
from ssrtune.config.run import RunConfig
from ssrtune.data.schema import DataError
from ssrtune.training.distributed import train_method
from ssrtune.methods import trained_rows
from ssrtune.models.loading import model_part
from ssrtune.models.placement import training_placement
from ssrtune.preflight import check_training
from ssrtune.stages.base import Inputs, Stage, TrainedModel
from ssrtune.stages.select import Select
from ssrtune.storage.permissions import widen_to_umask
from ssrtune.storage.fingerprints import Digest, Parts, file_digest
from ssrtune.storage.artifacts import read_json, write_json
from ssrtune.storage.layout import TRAINED_MARK, RunLayout


@dataclass(frozen=True, eq=False)
class Train(Stage):
    """Inputs: the model, its train settings (the run's `train` section with the model's overrides, less how
    the training runs: `TrainConfig.EXECUTION_ONLY`), the precision it trains in on this machine
    (`placement.training_placement`) and train/<method>.jsonl. Artifact: models/<name>/, finished when
    ssrtune_train.json exists (it records the model's name and method), its checkpoints then deleted unless
    `train.keep_checkpoints`; its fingerprint is in ssrtune_fingerprint.json. Resume: an unfinished training resumes from its last complete checkpoint; other
    inputs are refused (`--fresh` trains again from scratch)."""

    model: TrainedModel
    name = "train"
    kind, resumable = "whole", True

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {"targets": Select(self.model.method)}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.model_folder(self.model.name)

    def sidecar(self, layout: RunLayout) -> Path:
        return self.artifact(layout) / "ssrtune_fingerprint.json"

    def finished(self, layout: RunLayout) -> bool:
        return layout.trained(self.model.name).exists()

    def parts(self, inputs: Inputs) -> Parts:
        config = inputs.config
        settings = self.model.train_settings(config)
        rows = inputs.layout.targets(self.model.method.name)
        return {"model": model_part(config.model), "train": settings.fingerprint_settings(),
                "precision": training_placement(config.model, settings).precision,
                rows.relative_to(inputs.layout.root).as_posix(): Digest(file_digest(rows))}

    def own_config(self, config: RunConfig) -> RunConfig:
        """The configuration the training processes read: this model's train settings as the run's `train`."""
        return config.model_copy(update={"train": self.model.train_settings(config), "models": None,
                                         "methods": [self.model.method.name]})

    def check(self, inputs: Inputs) -> None:
        check_training(self.own_config(inputs.config))
        if not trained_rows(inputs["targets"]):
            raise DataError(inputs.layout.targets(self.model.method.name), None, None,
                            f"every example was dropped ({self.model.method.name} keeps none of them given the "
                            "judge's verdicts): nothing to train on")

    def make(self, inputs: Inputs) -> Path:
        layout, output_dir = inputs.layout, self.artifact(inputs.layout)
        rows_file, own = layout.targets(self.model.method.name), self.own_config(inputs.config)
        result = train_method(own, rows_file, output_dir)
        widen_to_umask(output_dir)
        write_json(layout.trained(self.model.name), {"name": self.model.name, "method": self.model.method.name,
                                                     **result})
        if not own.train.keep_checkpoints:  # finished: the checkpoints only served resuming it
            remove_checkpoints(output_dir)
        return output_dir

    def describe(self, result: Path) -> str:
        """`25 steps, loss 2.31 -> 0.84` (and where it resumed from)."""
        done = read_json(result / TRAINED_MARK)
        curve = done.get("loss_curve") or []
        loss = f", loss {curve[0]:.3g} -> {curve[-1]:.3g}" if len(curve) > 1 else (
            f", loss {done['train_loss']:.3g}" if done.get("train_loss") is not None else "")
        resumed = f" (resumed from {Path(done['resumed_from']).name})" if done.get("resumed_from") else ""
        if done.get("launcher_exit_code"):  # see distributed.launch
            resumed += f" (a process failed at exit, code {done['launcher_exit_code']}; the training had finished)"
        method = f"{self.model.method.name}, " if self.model.method.name != self.model.name else ""
        return f"{method}{'LoRA' if done.get('lora', True) else 'full'}, {done['steps']} steps{loss}{resumed}"
