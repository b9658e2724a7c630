"""The `train` section of the configuration: what the fine-tuning learns, and how it runs (batches,
processes, checkpoints, logging)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from ssrtune.config.fields import PLAIN_NAME, Strict
from ssrtune.registry import METHODS, did_you_mean
from ssrtune.storage.layout import BASE

# Gradient checkpointing by default above this many parameters: a 7B LoRA run at batch 8 x 512 needs more than
# 80 GB without it (16 GB with it, issue 9); below 1B the activations fit and recomputing them costs a third more time.
GRADIENT_CHECKPOINTING_ABOVE = 1e9


# A method's name (ssrtune.methods), checked against the registered methods when a configuration is read.
MethodName = Annotated[str, AfterValidator(METHODS.check)]

SAVE_INTERVAL = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>steps?|epochs?|s|m|h)\s*$")
SECONDS_PER = {"s": 1, "m": 60, "h": 3600}


def parse_save_every(text: str) -> tuple[str, float]:
    """`train.save_every` as (unit, amount): ("steps", 200), ("epoch", 0.25) or ("seconds", 1800)."""
    match = SAVE_INTERVAL.match(text)
    if match is None or float(match["number"]) <= 0:
        raise ValueError(f"{text!r} is not an interval: write e.g. '0.25 epoch', '200 steps', '30m', '2h' or '900s'")
    number, unit = float(match["number"]), match["unit"]
    if unit.startswith("step"):
        if not number.is_integer():
            raise ValueError(f"{text!r}: a number of steps is a whole number")
        return "steps", number
    if unit.startswith("epoch"):
        return "epoch", number
    return "seconds", number * SECONDS_PER[unit]


class TrainConfig(Strict):
    full: bool = Field(False, description="Full fine-tuning instead of LoRA.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator: the update is scaled by alpha / r.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input (0 skips a copy of every LoRA input).")
    lora_target_modules: list[str] | str = Field("all-linear", description="Modules that get LoRA adapters (PEFT's `target_modules`).")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW, linear decay after warm-up).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training targets (fractions allowed).")
    batch_size: int = Field(8, gt=0, description="The global batch: examples per optimizer step, over all processes.")
    micro_batch_size: int | None = Field(None, gt=0, description=(
        "Examples per forward pass on each device; the rest of the global batch is gradient accumulation "
        "(batch_size / (micro_batch_size x processes), which must be a whole number). null = the whole per-process "
        "share of the batch at once."))
    max_length: int = Field(512, gt=16, description="Longest training sequence (prompt + target), in tokens; longer documents are cut.")
    loss_type: Literal["nll", "dft"] = Field("nll", description=(
        "The token loss, passed to TRL (SFTConfig.loss_type): nll, the mean negative log-likelihood of the answer "
        "tokens; dft, Dynamic Fine-Tuning (arXiv 2508.05629), each token's NLL weighted by its "
        "probability under the model, not differentiated."))
    kl_beta: float = Field(0.0, ge=0.0, description=(
        "Weight of a KL penalty to the base model added to the loss: beta x the mean over the answer tokens of "
        "KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)), the base being the model with its "
        "LoRA adapter disabled. 0 = no penalty. LoRA only, with loss_type nll."))
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Share of the steps spent warming the learning rate up.")
    seed: int = Field(0, description="Seed of the adapter initialisation and the data order.")
    gradient_checkpointing: bool | None = Field(None, description=(
        "Recompute activations in the backward pass (less memory, about a third more time); null = on for models "
        f"over {GRADIENT_CHECKPOINTING_ABOVE:.0e} parameters."))
    quantization: Literal["4bit"] | None = Field(None, description=(
        "4bit: QLoRA (the frozen base model in 4-bit NF4 through bitsandbytes; CUDA only, LoRA only; "
        "pip install 'ssrtune[qlora]')."))
    save_every: str = Field("0.25 epoch", description=(
        "Checkpoint interval, for resuming after a crash: a fraction of an epoch ('0.25 epoch'), a number of "
        "optimizer steps ('200 steps') or a time ('30m', '2h', '900s'). Not part of the training fingerprint."))
    keep_checkpoints: bool = Field(False, description=(
        "Keep the checkpoints (checkpoint-*/) in models/<name>/ once the training finished; by default they are "
        "deleted then (a 7B full fine-tune's would take over 100 GB), leaving the trained weights."))
    report_to: Literal["none", "tensorboard", "trackio", "wandb"] = Field("none", description=(
        "Where the Trainer logs the loss besides models/<method>/ssrtune_train.json; each needs its extra, "
        "e.g. pip install 'ssrtune[tensorboard]'."))
    num_processes: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(1, description=(
        "Data-parallel training processes launched through `accelerate` (DDP), one per GPU, over all machines: "
        "accelerate's --num_processes, of which each machine starts num_processes / num_machines; auto = every "
        "visible GPU (1 without GPUs) times num_machines. `batch_size` stays the global batch, so the result does "
        "not depend on this number."))
    num_machines: int = Field(1, gt=0, description=(
        "Machines the training spans (accelerate's --num_machines), on a run directory on storage every machine "
        "shares: machine 0 runs `ssrtune train`; the others join through `ssrtune.training.distributed.launch` "
        "with their own machine_rank."))
    machine_rank: int = Field(0, ge=0, description=(
        "This machine's rank among num_machines (accelerate's --machine_rank); machine 0 writes the results."))
    main_process_ip: str | None = Field(None, description=(
        "The address of machine 0, which every machine reaches (accelerate's --main_process_ip); required when "
        "num_machines > 1. null = 127.0.0.1 on one machine."))
    main_process_port: int | None = Field(None, gt=0, lt=65536, description=(
        "The port on machine 0 where the processes meet (accelerate's --main_process_port); required when "
        "num_machines > 1. null = a free port on one machine."))
    accelerate_config: str | None = Field(None, description=(
        "An `accelerate config` file for multi-process training (e.g. FSDP or DeepSpeed on GPUs)."))

    # How the training runs, not what it learns: a change of these resumes the same model (see fingerprint_settings).
    EXECUTION_ONLY: ClassVar[frozenset[str]] = frozenset({
        "micro_batch_size", "gradient_checkpointing", "save_every", "keep_checkpoints", "report_to", "num_processes",
        "accelerate_config", "num_machines", "machine_rank", "main_process_ip", "main_process_port"})
    # Settings added after models were trained: their default is what those models were trained with.
    ADDED_LATER: ClassVar[frozenset[str]] = frozenset({"loss_type", "kl_beta"})
    REMOVED: ClassVar[dict[str, str]] = {
        "save_steps": "train.save_every (e.g. '200 steps', '0.25 epoch', '30m')",
        "gradient_accumulation_steps": "train.micro_batch_size (accumulation = batch_size / (micro_batch_size x "
                                       "processes); batch_size is the global batch)",
        "bf16": "model.dtype (one precision for every stage; training adds float32 master weights for full "
                "fine-tuning)",
    }

    @field_validator("save_every")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_save_every(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.quantization and self.full:
            raise ValueError("quantization (QLoRA) trains LoRA adapters on a frozen quantized model: not with full")
        if self.kl_beta and self.full:
            raise ValueError("kl_beta > 0 needs LoRA (the base is the model with its adapter disabled); with full: "
                             "true it would need a frozen copy of the model, which ssrtune does not keep")
        if self.kl_beta and self.loss_type != "nll":
            raise ValueError(f"kl_beta > 0 adds to ssrtune's own nll loss; loss_type {self.loss_type} is TRL's loss, "
                             "which it cannot add to: set loss_type: nll or kl_beta: 0")
        if self.num_processes != "auto":
            self.batch_plan(self.num_processes)
        self._machines()
        return self

    def _machines(self) -> None:
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} is not below num_machines {self.num_machines} "
                             "(machines are numbered from 0)")
        if self.num_machines == 1:
            return
        for name in ("main_process_ip", "main_process_port"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required when num_machines > 1: machine 0's "
                                 f"{'address' if name.endswith('ip') else 'port'}, the same on every machine")
        if self.num_processes != "auto" and self.num_processes % self.num_machines:
            raise ValueError(f"num_processes {self.num_processes} counts the processes of all machines: a multiple "
                             f"of num_machines {self.num_machines} (each machine starts the same number)")

    def batch_plan(self, processes: int) -> tuple[int, int]:
        """(examples per device per forward pass, gradient accumulation steps) for `processes` processes."""
        if self.batch_size % processes:
            raise ValueError(f"batch_size {self.batch_size} does not split evenly across num_processes {processes}")
        micro = self.micro_batch_size or self.batch_size // processes
        if self.batch_size % (micro * processes):
            raise ValueError(f"batch_size {self.batch_size} is not a whole number of micro_batch_size {micro} x "
                             f"{processes} process(es): gradient accumulation must be exact")
        return micro, self.batch_size // (micro * processes)

    @property
    def save_interval(self) -> tuple[str, float]:
        return parse_save_every(self.save_every)

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings that decide the trained weights: the training stage's fingerprint holds these only.

        A setting added later (ADDED_LATER) is left out at its default, which is what earlier versions trained with:
        the models they trained stay current."""
        fields = type(self).model_fields
        added_at_default = {name for name in self.ADDED_LATER if getattr(self, name) == fields[name].default}
        return self.model_dump(mode="json", exclude=set(self.EXECUTION_ONLY) | added_at_default)


# Shared by every model of a method: train/<method>.jsonl is cut to it (stages.select), so a model cannot change it.
RUN_WIDE = frozenset({"max_length"})


def setting_label(run_train: dict[str, Any], overrides: dict[str, Any]) -> str:
    """What a model's training learns beside the seed, in words (`LoRA`, `full, learning_rate=2e-05`): the models of
    a method with the same setting are replicates, pooled over their seeds by the report. `run_train` is the run's
    train section, `overrides` the model's; how the training runs (EXECUTION_ONLY) sets no setting apart."""
    full = overrides.get("full", run_train.get("full", False))
    rest = sorted(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                  for key, value in overrides.items() if key not in {"seed", "full", *TrainConfig.EXECUTION_ONLY})
    return ", ".join(["full" if full else "LoRA", *rest])


class ModelEntry(Strict):
    """One trained model of the run (`models:`): several may share a method (seeds, LoRA and full fine-tuning)."""

    name: str = Field(pattern=PLAIN_NAME, description=(
        "A plain folder name: models/<name>/ and eval/<name>/; unique in the run, and not `base`."))
    method: MethodName = Field(description=(
        "The method whose targets it trains on (ssrtune.methods)."))
    train: dict[str, Any] = Field(default_factory=dict, description=(
        "Overrides of the run's `train` section for this model, e.g. {seed: 1} or {full: true, learning_rate: 2e-5}."))

    @field_validator("name")
    @classmethod
    def _not_base(cls, name: str) -> str:
        if name == BASE:
            raise ValueError(f"`{BASE}` names the model before fine-tuning (eval/{BASE}/)")
        return name

    @field_validator("train")
    @classmethod
    def _train_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        for key in overrides:
            if key in RUN_WIDE:
                raise ValueError(f"`{key}` is the run's (train.{key}): every model of a method trains on the same "
                                 f"train/<method>.jsonl, cut to it")
            if key not in TrainConfig.model_fields:
                raise ValueError(f"`{key}` is not a train setting{did_you_mean(key, list(TrainConfig.model_fields))}")
        return overrides

    def resolve(self, run_train: TrainConfig) -> TrainConfig:
        """The run's train section with this model's overrides."""
        return TrainConfig.model_validate({**run_train.model_dump(), **self.train})



def check_models(entries: list[ModelEntry], run_train: TrainConfig, message: Callable[[dict], str]) -> None:
    """Names unique, and each model's train settings valid once its overrides are applied (`message` words a
    pydantic error)."""
    for number, entry in enumerate(entries):
        if entry.name in [e.name for e in entries[:number]]:
            raise ValueError(f"models.{number}.name: {entry.name!r} names two models")
        try:
            entry.resolve(run_train)
        except ValidationError as err:
            raise ValueError(f"models.{number}.train: " + "; ".join(
                ".".join(map(str, e["loc"])) + ": " * bool(e["loc"]) + message(e) for e in err.errors())) from None
