"""Supervised fine-tuning with TRL's `SFTTrainer` on prompt/completion chat data, LoRA by default.

The loss covers the response tokens and the end-of-turn token only: the prompt is the conversation up to the
assistant turn, the completion is the assistant turn, and TRL masks everything outside the completion.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import SFTConfig, SFTTrainer

from ssrtune.training.checkpoints import checkpoint_callbacks, last_complete_checkpoint, save_arguments
from ssrtune.training.kl_penalty import base_logits, kl_to_base_sum
from ssrtune.config.errors import ConfigError
from ssrtune.console import quiet
from ssrtune.data.chat_format import ChatTemplateError, prompt_and_answer_ids, template_name
from ssrtune.extras import import_extra
from ssrtune.inference.padding import left_pad, left_padded_batch
from ssrtune.models.loading import load_model
from ssrtune.models.placement import Placement, process_count, training_placement
from ssrtune.progress import progress_bar
from ssrtune.config.fields import ModelConfig
from ssrtune.config.train import GRADIENT_CHECKPOINTING_ABOVE, TrainConfig

log = logging.getLogger(__name__)


class NoTrainableTokensError(ValueError):
    pass


def to_dataset(rows: list[dict]) -> Dataset:
    """TRL's conversational prompt/completion format."""
    return Dataset.from_list([
        {"id": r["id"], "prompt": r["messages"], "completion": [{"role": "assistant", "content": r["target"]}]}
        for r in rows
    ])


def left_pad_collator(pad_token_id: int, seen_ids: list[str] | None = None):
    """Left padding (`inference.padding`) puts every row's answer at the end of the batch, so the loss needs logits
    only for the last few positions (`logits_to_keep`).

    The ids of the examples collated are appended to `seen_ids`: the record of which shard this process trained on.
    """

    def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
        if seen_ids is not None:
            seen_ids.extend(e["id"] for e in examples)
        batch = left_padded_batch([e["input_ids"] for e in examples], pad_token_id)
        return {**batch, "labels": left_pad([e["labels"] for e in examples], -100)}

    return collate


class AnswerOnlySFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss computes logits only over the answer span.

    Off Triton devices (CPU among them) TRL's chunked LM head still projects every position through the
    vocabulary; in grounded QA the document is most of each sequence, so that is mostly wasted. With left
    padding the answers end every row, and `logits_to_keep` asks the model for just those positions. The loss is
    TRL's token-mean NLL over the same labels, plus `kl_beta` times the mean KL to the base model over those tokens
    (`kl_penalty`). Any other `loss_type` (dft) is TRL's own loss, computed by TRL.
    """

    def __init__(self, *args, kl_beta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_beta = kl_beta

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, "id"]  # the collator records which examples it saw

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.loss_type != "nll":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        labelled = labels != -100
        first = int(labelled.float().argmax(dim=1)[labelled.any(dim=1)].min()) if labelled.any() else labels.size(1)
        keep = labels.size(1) - first + 1  # the logit at t predicts token t + 1
        if self.kl_beta:
            base = base_logits(model, self.accelerator.unwrap_model(model), inputs, keep)
        outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = outputs.logits[:, :-1].float()
        targets = labels[:, labels.size(1) - keep + 1:]
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
        if self.kl_beta:
            loss_sum = loss_sum + self.kl_beta * kl_to_base_sum(logits, base, targets)
        n_tokens = targets.ne(-100).sum()
        loss = loss_sum / (n_tokens.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        with torch.no_grad():
            mode = "train" if model.training else "eval"
            correct = (logits.argmax(-1) == targets) & targets.ne(-100)
            self._metrics[mode]["mean_token_accuracy"].append((correct.sum() / n_tokens.clamp(min=1)).item())
        return (loss, outputs) if return_outputs else loss


def check_trainable(rows: list[dict], dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail loudly unless every example's loss covers exactly its target and the end of its turn, as the chat
    template renders them after the prompt (`chat_format.prompt_and_answer_ids`, which also refuses a template whose
    prompt is not a prefix of prompt + target).

    TRL silently drops examples whose labels are all masked after truncation, and starts the loss where the prompt
    alone and prompt + target part; a truncated answer would teach the model to stop mid-answer and never to end its
    turn.
    """
    kept = {row["id"]: row for row in dataset}
    dropped = [r["id"] for r in rows if r["id"] not in kept]
    cut, other = [], []
    for row in rows:
        if row["id"] in kept:
            prompt, full = prompt_and_answer_ids(tokenizer, row["messages"], row["target"], f"example {row['id']!r}")
            trained = kept[row["id"]]
            if [t for t in trained["labels"] if t != -100] != full[len(prompt):]:
                (cut if len(trained["input_ids"]) < len(full) else other).append(row["id"])
    if dropped or cut:
        raise NoTrainableTokensError(
            f"{len(dropped)} training example(s) have no response token left to train on and {len(cut)} lost "
            f"the end of their response (longer than train.max_length, or an empty target): {(dropped + cut)[:5]}"
        )
    if other:
        raise ChatTemplateError(f"{len(other)} training example(s) would train on other tokens than their target and "
                                f"end of turn ({template_name(tokenizer)}): {other[:5]}")


class TrainingBar(TrainerCallback):
    """The training's progress in ssrtune's one bar style (steps, the latest loss), in place of the Trainer's tqdm
    bar and its printed log dicts, which the console shows only with --verbose (`console.quiet`)."""

    def __init__(self, description: str):
        self.description, self.bar, self.task = description, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = progress_bar(self.description)
            self.bar.start()
            self.task = self.bar.add_task("train", total=state.max_steps, completed=state.global_step, rate="")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and "loss" in (logs or {}):
            self.bar.update(self.task, rate=f"loss {float(logs['loss']):.3g}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class OneDeviceSFTConfig(SFTConfig):
    """`SFTConfig` for a process that trains on one device.

    The Trainer wraps the model in `torch.nn.DataParallel` when one process sees several GPUs: the batch silently
    becomes per-device batch x GPUs, through a replicate-scatter-gather that is slower than DDP. The Trainer's own
    escape (for models it treats as model-parallel) is `n_gpu = 1`; we take it always, since ssrtune uses several GPUs
    only through one accelerate process per GPU (`train.num_processes`).
    """

    @property
    def n_gpu(self) -> int:
        return min(super().n_gpu, 1)


def sft_config(config: TrainConfig, output_dir: Path, n_parameters: int, run_name: str | None = None, *,
               placement: Placement) -> SFTConfig:
    """The Trainer's arguments; its mixed precision is the placement's compute precision (bf16 or fp16 autocast)."""
    micro_batch, accumulation = config.batch_plan(process_count(config))
    checkpointing = (n_parameters > GRADIENT_CHECKPOINTING_ABOVE if config.gradient_checkpointing is None
                     else config.gradient_checkpointing)
    return OneDeviceSFTConfig(
        output_dir=str(output_dir),
        run_name=run_name,
        num_train_epochs=config.epochs,
        # The global batch is the configured one, whatever the number of processes and micro-batches: same steps,
        # same result (the loss is normalised by the answer tokens of the whole global batch).
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="linear",
        max_length=config.max_length,
        completion_only_loss=True,
        loss_type=config.loss_type,
        bf16=placement.compute == torch.bfloat16,  # TRL defaults to True, which fails on hardware without bf16
        fp16=placement.compute == torch.float16,
        use_cpu=placement.device_type == "cpu",  # bf16 on CPU is refused unless the Trainer is told it runs there
        # A small model's activations fit, and recomputing them costs a third more time; a 7B model's do not.
        activation_checkpointing=checkpointing,
        # LoRA leaves the frozen base weights without gradients: DDP would search the graph for them every step.
        ddp_find_unused_parameters=False if not config.full else None,
        logging_steps=5,
        **save_arguments(config),
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        report_to=config.report_to,
        dataset_num_proc=None,
        remove_unused_columns=True,
    )


def load_for_training(model_config: ModelConfig, config: TrainConfig) -> tuple[PreTrainedModel, Placement]:
    """The base model, loaded straight onto this process's GPU in the training precision (QLoRA: quantized to 4 bits
    while loading), so that no rank holds a float32 copy in host memory; on the CPU as before. Returns it with its
    placement."""
    placement = training_placement(model_config, config)
    if placement.device_map not in (None, "cpu") and not placement.device_map.startswith("cuda"):
        raise ConfigError(f"model.device_map {model_config.device_map!r} shards one model over GPUs; training runs "
                          "one model per process (train.num_processes), or FSDP / DeepSpeed through "
                          "train.accelerate_config")
    quantization = None
    if config.quantization == "4bit":
        if placement.device_type != "cuda":
            raise ConfigError("train.quantization: 4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels run "
                              "there only; this machine has none (train without `quantization`)")
        import_extra("bitsandbytes", "qlora", "train.quantization: 4bit")
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=placement.compute,
                                          bnb_4bit_quant_storage=placement.compute)
    model = load_model(model_config, device=placement.device_map, dtype=placement.dtype,
                       quantization_config=quantization)
    return model, placement


def build_trainer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: list[dict], config: TrainConfig,
                  output_dir: Path, seen_ids: list[str] | None = None, run_name: str | None = None,
                  placement: Placement | None = None) -> AnswerOnlySFTTrainer:
    """The trainer for `rows` ({id, messages, target}), its data checked (see `check_trainable`); `placement` says
    where and in which precision it trains (`load_for_training`), by default the model as it is."""
    if config.report_to != "none":
        import_extra(config.report_to, config.report_to, f"train.report_to: {config.report_to}")
    peft_config = None
    if not config.full:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
    tokenizer.padding_side = "right"
    trainer = AnswerOnlySFTTrainer(
        model=model,
        args=sft_config(config, output_dir, model.num_parameters(), run_name,
                        placement=placement or Placement.of(model)),
        train_dataset=to_dataset(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        data_collator=left_pad_collator(tokenizer.pad_token_id, seen_ids),
        callbacks=checkpoint_callbacks(config),
        kl_beta=config.kl_beta,
    )
    check_trainable(rows, trainer.train_dataset, tokenizer)
    if quiet():
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(TrainingBar(f"train {run_name or output_dir.name}"))
    return trainer


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: list[dict], config: TrainConfig,
          output_dir: Path, run_name: str | None = None, placement: Placement | None = None) -> dict:
    """Fine-tune on `rows` ({id, messages, target}), resuming from the last checkpoint in `output_dir`.

    Under `accelerate launch` every process calls this on the same rows and trains on its own shard.
    """
    from accelerate.utils import gather_object

    seen_ids: list[str] = []
    trainer = build_trainer(model, tokenizer, rows, config, output_dir, seen_ids, run_name, placement)
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint:
        log.info("resuming training from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"train_loss": result.training_loss, "loss_curve": losses, "steps": trainer.state.global_step,
            "resumed_from": checkpoint, "lora": not config.full, "quantization": config.quantization,
            "micro_batch_size": trainer.args.per_device_train_batch_size,
            "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
            "gradient_checkpointing": trainer.args.activation_checkpointing, "processes": trainer.args.world_size,
            "run_name": run_name, "mixed_precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "no",
            "runtime_s": result.metrics.get("train_runtime"), "rank": trainer.args.process_index,
            "example_ids_per_rank": gather_object([seen_ids])}
