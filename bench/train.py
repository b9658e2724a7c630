"""Training throughput: ssrtune's training path against TRL `SFTTrainer` with its defaults plus LoRA.

Same model, data (the quickstart's gold targets), LoRA rank, batch size, sequence length and learning-rate
schedule; each side runs in its own process so that peak memory is its own. The baseline keeps everything else
at TRL's defaults (gradient checkpointing on, bf16, the loss over every position, LoRA dropout 0.05 as in TRL's
`ModelConfig`); ssrtune computes logits on the answer positions only, with LoRA dropout 0 and no checkpointing.

    .venv/bin/python bench/train.py [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PeakRSS, quickstart, save, train_records

LOSS_TOLERANCE = 0.05  # relative; the baseline's LoRA dropout perturbs its losses a little


def run_variant(variant: str, steps: int, output: Path) -> None:
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ssrtune.models.loading import load_tokenizer
    from ssrtune.methods import METHODS
    from ssrtune.training.trainer import build_trainer, load_for_training, to_dataset

    config = quickstart(["train.save_every=1000000 steps"])
    train = config.train
    rows = METHODS["sft"].select(train_records(config, steps * train.batch_size))
    model, placement = load_for_training(config.model, train)  # as ssrtune trains: the same weights for both
    tokenizer = load_tokenizer(config.model)
    with tempfile.TemporaryDirectory() as scratch:
        if variant == "ssrtune":
            trainer = build_trainer(model, tokenizer, rows, train, Path(scratch), placement=placement)
        else:
            args = SFTConfig(output_dir=scratch, per_device_train_batch_size=train.batch_size,
                             max_length=train.max_length, num_train_epochs=train.epochs,
                             learning_rate=train.learning_rate,
                             warmup_steps=train.warmup_ratio, lr_scheduler_type="linear", seed=train.seed,
                             data_seed=train.seed, save_strategy="no", report_to="none",
                             use_cpu=True)
            lora = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=0.05,
                              target_modules=train.lora_target_modules, task_type="CAUSAL_LM")
            trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(rows), processing_class=tokenizer,
                                 peft_config=lora)
        trainer.args.logging_steps = 1  # every step's loss, to compare the curves
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        with PeakRSS() as memory:
            result = trainer.train()
    runtime = result.metrics["train_runtime"]
    output.write_text(json.dumps({
        "steps": trainer.state.global_step, "tokens": tokens, "runtime_s": runtime, "tokens_per_s": tokens / runtime,
        "s_per_step": runtime / trainer.state.global_step, "peak_rss_mib": memory.peak / 2**20,
        "rss_growth_mib": memory.growth_mib, "mixed_precision": trainer.accelerator.mixed_precision,
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per side")
    parser.add_argument("--variant", choices=["ssrtune", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return run_variant(args.variant, args.steps, args.output)

    sides = {}
    with tempfile.TemporaryDirectory() as scratch:
        for variant in ("trl", "ssrtune"):
            output = Path(scratch) / f"{variant}.json"
            subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                            "--output", str(output)], check=True)
            sides[variant] = json.loads(output.read_text())
    ours, base = sides["ssrtune"], sides["trl"]
    gaps = [abs(a - b) / b for a, b in zip(ours["losses"], base["losses"])]
    result = {
        "config": {"steps": args.steps, **quickstart().train.model_dump(include={"batch_size", "max_length",
                                                                                "lora_r", "learning_rate"})},
        "ssrtune": ours, "trl_defaults": base,
        "speedup": ours["tokens_per_s"] / base["tokens_per_s"],
        "memory_ratio": ours["peak_rss_mib"] / base["peak_rss_mib"],
        "loss_max_relative_gap": max(gaps),
    }
    path = save("train", result)
    print(f"train: {ours['tokens_per_s']:.0f} vs {base['tokens_per_s']:.0f} tokens/s "
          f"({result['speedup']:.2f}x TRL defaults, target 2x); peak RSS {ours['peak_rss_mib']:.0f} vs "
          f"{base['peak_rss_mib']:.0f} MiB ({result['memory_ratio']:.2f}x); losses {ours['losses']} vs "
          f"{base['losses']} (max gap {max(gaps):.1%}) -> {path}")
    assert gaps and max(gaps) <= LOSS_TOLERANCE, f"loss curves differ by {max(gaps):.1%} > {LOSS_TOLERANCE:.0%}"


if __name__ == "__main__":
    main()
