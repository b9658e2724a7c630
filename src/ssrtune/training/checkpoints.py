"""When training writes checkpoints (`train.save_every`) and which one a restarted training resumes from."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ssrtune.config.train import TrainConfig

log = logging.getLogger(__name__)


def save_arguments(config: TrainConfig) -> dict:
    """The Trainer's save settings for `train.save_every`: steps and epoch fractions are the Trainer's own
    (a `save_steps` below 1 is a fraction of all the optimizer steps); a time interval is `TimedCheckpoints`."""
    unit, amount = config.save_interval
    if unit == "steps":
        return {"save_strategy": "steps", "save_steps": int(amount)}
    if unit == "epoch" and amount < config.epochs:
        return {"save_strategy": "steps", "save_steps": amount / config.epochs}
    # A time interval, or an interval as long as the training: no checkpoint by step count (the trained model is
    # saved at the end anyway).
    return {"save_strategy": "no"}


class TimedCheckpoints(TrainerCallback):
    """Ask for a checkpoint once `seconds` of training have passed since the last one.

    The Trainer saves by step count or epoch only, and a step's time varies from a laptop to a GPU node by a factor of
    a thousand, so "every 30 minutes" is the interval that bounds the work a crash loses on any machine. Under several
    processes rank 0's clock decides for every rank: a save is a collective operation under FSDP and DeepSpeed, and
    ranks that disagreed about it would wait for each other forever.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        due = time.monotonic() - self.last >= self.seconds
        if args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            due = broadcast_object_list([due], from_process=0)[0]
        if due:
            control.should_save = True
            self.last = time.monotonic()
        return control


def checkpoint_callbacks(config: TrainConfig) -> list[TrainerCallback]:
    unit, amount = config.save_interval
    return [TimedCheckpoints(amount)] if unit == "seconds" else []


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoints the Trainer finished writing, oldest first.

    The Trainer writes a checkpoint's files one by one, trainer_state.json last, straight into checkpoint-<step>/;
    a crash while saving leaves a newer folder without a readable state, which `get_last_checkpoint` would pick
    and resuming would fail on.
    """
    complete = []
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        complete.append(folder)
    return sorted(complete, key=lambda f: int(f.name.rsplit("-", 1)[1]))


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint (`complete_checkpoints`), or None; the incomplete ones are named in a warning."""
    complete = complete_checkpoints(output_dir)
    for folder in set(Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")) - set(complete):
        log.warning("ignoring the incomplete checkpoint %s (interrupted while saving)", folder)
    return str(complete[-1]) if complete else None


def remove_checkpoints(output_dir: Path) -> int:
    """Delete the checkpoints of a finished training (they only serve resuming it); returns how many there were."""
    folders = sorted(Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"))
    for folder in folders:
        shutil.rmtree(folder)
    return len(folders)
