"""Multi-process training: `accelerate launch` starts this module once per process, and the Trainer inside each
process runs DDP on its shard of every global batch (gloo on CPU, NCCL on GPUs, or FSDP / DeepSpeed through an
accelerate config file).

The parent process has already written the training rows (train/<method>.jsonl), so the workers only train.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ssrtune.config import ConfigError, RunConfig
from ssrtune.console import apply_quiet, quiet
from ssrtune.preflight import train_in_child_process
from ssrtune.train_config import process_count
from ssrtune.store import iter_jsonl, read_json, write_json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(config: RunConfig, rows_file: Path, output_dir: Path, result_file: Path) -> list[str]:
    train = config.train
    worker = ["-m", "ssrtune.distributed", config.model_dump_json(), str(rows_file), str(output_dir), str(result_file)]
    if process_count(train) == 1:  # one process: a plain child, whose end returns its GPU memory (preflight)
        return [sys.executable, *worker]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(process_count(train)),
               "--num_machines", "1", "--main_process_port", str(free_port())]
    if train.accelerate_config:
        command += ["--config_file", train.accelerate_config]
    else:
        # torchrun under the hood; on a machine without GPUs every process trains on the CPU with gloo
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return command + worker


def train_method(config: RunConfig, rows_file: Path, output_dir: Path) -> dict:
    """Train on `rows_file` (train/<method>.jsonl) into `output_dir`: in this process on one device (in a child process
    when a later vLLM engine needs its GPU memory: `preflight.train_in_child_process`), or with
    `train.num_processes` accelerate processes; the result of `train.train`."""
    processes = process_count(config.train)
    try:
        config.train.batch_plan(processes)
    except ValueError as err:
        raise ConfigError(f"train: {err}") from None
    if processes == 1 and not train_in_child_process(config):
        return train_here(config, rows_file, output_dir)
    return launch(config, rows_file, output_dir)


def launch(config: RunConfig, rows_file: Path, output_dir: Path) -> dict:
    """Train on `rows_file` with `config.train.num_processes` processes; the result of `train.train`."""
    with tempfile.TemporaryDirectory() as scratch:
        result_file = Path(scratch) / "result.json"
        subprocess.run(launch_command(config, rows_file, output_dir, result_file), check=True)
        return read_json(result_file)


def train_here(config: RunConfig, rows_file: Path, output_dir: Path) -> dict:
    """This process's part of the training: the model loaded onto its own device (see `load_for_training`)."""
    from ssrtune.models import load_tokenizer
    from ssrtune.methods import trained_rows
    from ssrtune.train import load_for_training, train

    rows = trained_rows(list(iter_jsonl(rows_file)))
    model, placement = load_for_training(config.model, config.train)
    return train(model, load_tokenizer(config.model), rows, config.train, output_dir,
                 run_name=f"{config.name}-{output_dir.name}", placement=placement)


def worker(config_json: str, rows_file: str, output_dir: str, result_file: str) -> None:
    if quiet():  # started by a quiet command line: the environment says so
        apply_quiet()
    result = train_here(RunConfig.model_validate_json(config_json), Path(rows_file), Path(output_dir))
    if result["rank"] == 0:
        write_json(Path(result_file), result)


if __name__ == "__main__":
    worker(*sys.argv[1:])
