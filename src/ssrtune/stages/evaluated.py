"""What every stage of one model's evaluation shares: the model it evaluates (the base model, or a trained one), its
place under eval/<model>/ and its key under evaluate/<model>/, what the model is as a fingerprint part, and the
model itself behind `evaluate.engine`, built once for every stage of the evaluation that has work left (`Held`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.inference.factory import stage_engine_identity, stage_lm
from ssrtune.inference.lm import LM
from ssrtune.models.loading import model_part
from ssrtune.stages.base import BASE, Inputs, Stage, TrainedModel
from ssrtune.stages.train import Train
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint


class WeightsAbsentError(FileNotFoundError):
    """A trained model to run whose weights are absent: a run directory restored from a results ledger
    (`ssrtune.ledger`) holds a finished model's result and fingerprint, not its weights."""


def has_weights(folder: Path) -> bool:
    """Whether a trained model's folder holds its weights (an adapter's, or a full model's, shards included)."""
    return any(folder.glob("*.safetensors"))


@dataclass(frozen=True, eq=False)
class EvaluationStage(Stage):
    """A stage of `model`'s evaluation (None: the base model), keyed `evaluate/<model>/<part>`, so that
    `ssrtune evaluate --model <model> --fresh` redoes every one of them (`Run.fresh`) and a refused one names that
    command (`Run.redo_hint`)."""

    model: TrainedModel | None = None
    name = "evaluate"

    @property
    def subject(self) -> str:
        return BASE if self.model is None else self.model.name  # the base model has no TrainedModel

    @property
    def part(self) -> str | None:
        """Which part of the evaluation the stage is (`task`, `retention/arc_easy`); None: the whole."""
        return None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.subject}" + (f"/{self.part}" if self.part else "")

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        """The trained model, for the stages that run it."""
        return {} if self.model is None else {"model": Train(self.model)}

    def evaluated_model(self, inputs: Inputs) -> Parts:
        """The model under evaluation (the base model, or the trained one by its result file) and its engine."""
        config = inputs.config
        model = ({"model": model_part(config.model)} if self.model is None else
                 {f"models/{self.model.name}": Digest(file_digest(inputs.layout.trained(self.model.name)))})
        engine = stage_engine_identity(config, config.evaluate)
        return {"evaluated model": Digest(fingerprint(*model.values(), engine), {**model, "evaluate.engine": engine})}

    def lm(self, inputs: Inputs) -> LM:
        """The model under evaluation, built once for the stages of its evaluation (`Inputs.held`)."""
        config = inputs.config
        adapter = None if self.model is None else Train(self.model).artifact(inputs.layout)
        if adapter is not None and not has_weights(adapter):
            raise WeightsAbsentError(f"{adapter}: the weights of {self.model.name} are absent (a run directory "
                                     "restored from a results ledger keeps none), and its evaluation has work left: "
                                     f"`ssrtune train CONFIG --model {self.model.name} --fresh` trains it again")
        return inputs.held.lm(self.subject, lambda: stage_lm(config, config.evaluate, adapter))
