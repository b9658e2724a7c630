"""Multi-process training: `accelerate launch` starts this module once per process, and the Trainer inside each
process runs DDP on its shard of every global batch (gloo on CPU, NCCL on GPUs, or FSDP / DeepSpeed through an
accelerate config file).

The parent process has already written the training rows (train/<method>.jsonl), so the workers only train.

Every worker tears its process group down before it exits. Left to interpreter exit, a gloo worker thread
(`pt_gloo_runloop`) can still be releasing the last collective's work when Python finalizes: the release drops a
tensor's Python object, which needs the GIL, and a thread that asks for the GIL during finalization is ended by
`pthread_exit`, whose unwinding through that noexcept C++ destructor calls `std::terminate` ("terminate called
without an active exception", SIGABRT) after a training that had finished. `destroy_process_group` joins those
threads while the interpreter is still whole.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ssrtune.config.errors import ConfigError
from ssrtune.config.run import RunConfig
from ssrtune.console import apply_quiet, quiet
from ssrtune.errors import TrainingProcessError
from ssrtune.preflight import train_in_child_process
from ssrtune.models.placement import process_count
from ssrtune.storage.artifacts import iter_jsonl, read_json, write_json

log = logging.getLogger(__name__)

# What a finished training leaves in its folder (`Trainer.save_model`): a PEFT adapter, or full weights in one file
# or in shards named by an index.
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(config: RunConfig, rows_file: Path, output_dir: Path, result_file: Path) -> list[str]:
    train = config.train
    worker = ["-m", "ssrtune.training.distributed", config.model_dump_json(), str(rows_file), str(output_dir), str(result_file)]
    if process_count(train) == 1:  # one process: a plain child, whose end returns its GPU memory (preflight)
        return [sys.executable, *worker]
    # --num_processes counts every machine's processes: accelerate starts num_processes // num_machines on each
    # (nproc_per_node in accelerate/utils/launch.py, prepare_multi_gpu_env)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(process_count(train)),
               "--num_machines", str(train.num_machines), "--machine_rank", str(train.machine_rank),
               "--main_process_port", str(train.main_process_port or free_port())]
    if train.main_process_ip is not None:
        command += ["--main_process_ip", train.main_process_ip]
    if train.accelerate_config:
        command += ["--config_file", train.accelerate_config]
    else:
        # torchrun under the hood; on a machine without GPUs every process trains on the CPU with gloo
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return command + worker


def train_method(config: RunConfig, rows_file: Path, output_dir: Path) -> dict:
    """Train on `rows_file` (train/<method>.jsonl) into `output_dir`: in this process on one device (in a child process
    when a later vLLM engine needs its GPU memory: `preflight.train_in_child_process`), or with
    `train.num_processes` accelerate processes; the result of `training.trainer.train`."""
    processes = process_count(config.train)
    try:
        config.train.batch_plan(processes)
    except ValueError as err:
        raise ConfigError(f"train: {err}") from None
    if processes == 1 and not train_in_child_process(config):
        return train_here(config, rows_file, output_dir)
    return launch(config, rows_file, output_dir)


def launch(config: RunConfig, rows_file: Path, output_dir: Path) -> dict | None:
    """Train on `rows_file` with `config.train.num_processes` processes; the result of `training.trainer.train`, or None on a
    machine other than machine 0 (`train.machine_rank`), whose processes train their shards and write nothing but
    their part of each checkpoint in `output_dir` (which every machine shares).

    Rank 0 (the global rank: process 0 of machine 0) writes the result only after every rank has trained and the
    weights are saved (`training.trainer.train` gathers the ranks' example ids after `save_model`), so a launch that fails after
    that point has finished the training: a process that died while exiting does not make it train again. The result
    then records the launcher's exit code."""
    processes = process_count(config.train)
    with tempfile.TemporaryDirectory() as scratch:
        result_file = Path(scratch) / "result.json"
        code = subprocess.run(launch_command(config, rows_file, output_dir, result_file)).returncode
        result = read_json(result_file) if result_file.exists() else None
    if code == 0:
        return result
    launcher = "the training process" if processes == 1 else "accelerate launch"  # one process: a plain child
    if config.train.machine_rank > 0:
        raise TrainingProcessError(
            f"training {output_dir.name} on machine {config.train.machine_rank} failed (accelerate launch exited "
            f"with code {code}; the log above names the rank and its error)")
    if result is None or not any((output_dir / name).exists() for name in WEIGHT_FILES):
        raise TrainingProcessError(
            f"training {output_dir.name} with {processes} processes failed ({launcher} exited with code "
            f"{code}; the log above names the rank and its error) before the training finished; running the stage "
            f"again resumes from the last complete checkpoint in {output_dir}")
    log.warning("training %s finished (%d steps, weights saved in %s) but a process failed at exit (%s exited with "
                "code %d): the training is kept", output_dir.name, result["steps"], output_dir, launcher, code)
    return {**result, "launcher_exit_code": code}


def train_here(config: RunConfig, rows_file: Path, output_dir: Path) -> dict:
    """This process's part of the training: the model loaded onto its own device (see `load_for_training`)."""
    from ssrtune.models.loading import load_tokenizer
    from ssrtune.methods import trained_rows
    from ssrtune.training.trainer import load_for_training, train

    rows = trained_rows(list(iter_jsonl(rows_file)))
    model, placement = load_for_training(config.model, config.train)
    return train(model, load_tokenizer(config.model), rows, config.train, output_dir,
                 run_name=f"{config.name}-{output_dir.name}", placement=placement)


def close_process_group(finished: bool) -> None:
    """End this process's part in the process group (see the module docstring). After a finished training, wait for
    every rank first, so that none leaves while another is still in a collective (its peers would see the
    connection drop); after a failure, leave at once, since the other ranks may never arrive."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def worker(config_json: str, rows_file: str, output_dir: str, result_file: str) -> None:
    if quiet():  # started by a quiet command line: the environment says so
        apply_quiet()
    finished = False
    try:
        result = train_here(RunConfig.model_validate_json(config_json), Path(rows_file), Path(output_dir))
        if result["rank"] == 0:  # the global rank (TrainingArguments.process_index): process 0 of machine 0
            write_json(Path(result_file), result)
        finished = True
    finally:
        close_process_group(finished)


if __name__ == "__main__":
    worker(*sys.argv[1:])
