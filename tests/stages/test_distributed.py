"""Two CPU processes (gloo) launched through accelerate train disjoint shards to the single-process weights."""

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from safetensors.torch import load_file

from ssrtune.training import distributed
from ssrtune.config.run import ModelConfig, RunConfig, TrainConfig
from ssrtune.training.distributed import TrainingProcessError, launch, launch_command
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.storage.artifacts import write_jsonl
from ssrtune.training.trainer import train
from tests.training_rows import rows
from tests.paths import TESTS


def twelve_rows(path):
    """12 examples in `path`: with a global batch of 4 (2 per process) and one epoch, 3 optimizer steps."""
    data = [{**row, "id": f"{row['id']}-{copy}"} for copy in range(2) for row in rows()]
    write_jsonl(path, data)
    return data


def two_process_config(tiny_model, **train) -> RunConfig:
    return RunConfig(model=ModelConfig(name=str(tiny_model), dtype="float32"), train=TrainConfig(
        batch_size=4, epochs=1, learning_rate=3e-3, warmup_ratio=0.0, save_every="1000 steps", num_processes=2,
        **train))


def assert_trained_like_one_process(result, trained, tiny_model, data, config, tmp_path):
    """`result` and the adapter in `trained` (two processes, one example shard each) are those of a single process
    trained on `data` with the same settings."""
    model_config = ModelConfig(name=str(tiny_model))
    single = train(load_model(model_config), load_tokenizer(model_config), data,
                   config.train.model_copy(update={"num_processes": 1}), tmp_path / "single")

    first, second = (set(ids) for ids in result["example_ids_per_rank"])
    assert not first & second and first | second == {row["id"] for row in data}
    assert len(single["example_ids_per_rank"]) == 1 and result["steps"] == single["steps"] == 3
    ddp = load_file(trained / "adapter_model.safetensors")
    one = load_file(tmp_path / "single" / "adapter_model.safetensors")
    assert ddp.keys() == one.keys()
    # The two runs differ only in the order of fp32 reductions (DDP averages two shards' gradients), which
    # changes gradients by a few hundred units of fp32 rounding on some CPUs (1e-4 relative was seen on AVX2,
    # where 1.3e-6 absolute broke a fixed atol=1e-6). Adam turns a relative gradient change into the same
    # relative change of its step, and a step moves a weight by at most about lr: over `steps` steps the runs may
    # differ by a small fraction of steps * lr. A thousandth of it is far above reordering noise and far below
    # what a different batch, shard or step count gives (a change of the order of lr itself).
    tolerance = 1e-3 * single["steps"] * config.train.learning_rate
    for name, weight in one.items():
        torch.testing.assert_close(ddp[name], weight, rtol=0, atol=tolerance)
    # LoRA B starts at zero, so agreeing after training means both took the same steps.
    assert all(weight.abs().max() > 100 * tolerance for name, weight in one.items() if "lora_B" in name)


def test_two_processes_train_disjoint_shards_to_the_single_process_weights(tiny_model, tmp_path):
    data = twelve_rows(tmp_path / "rows.jsonl")
    config = two_process_config(tiny_model)

    result = launch(config, tmp_path / "rows.jsonl", tmp_path / "ddp")
    assert_trained_like_one_process(result, tmp_path / "ddp", tiny_model, data, config, tmp_path)


def test_two_machines_train_to_the_single_process_weights_and_machine_0_writes_the_result(tiny_model, tmp_path):
    # Two "machines" on this one: two launches at once, machine ranks 0 and 1 meeting at 127.0.0.1, one gloo process
    # each, training into one output folder (the run directory on shared storage).
    data = twelve_rows(tmp_path / "rows.jsonl")
    machines = {"num_machines": 2, "main_process_ip": "127.0.0.1", "main_process_port": distributed.free_port()}
    configs = [two_process_config(tiny_model, **machines, machine_rank=rank) for rank in (0, 1)]

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda config: launch(config, tmp_path / "rows.jsonl", tmp_path / "nodes"), configs)
    assert second is None and first["rank"] == 0  # only process 0 of machine 0 wrote a result
    assert_trained_like_one_process(first, tmp_path / "nodes", tiny_model, data, configs[0], tmp_path)


def dying_launch(monkeypatch, when: str) -> None:
    """Launch tests/dying_worker.py (ssrtune's worker, whose rank 1 aborts `when`) in place of ssrtune's worker."""
    launch_command = distributed.launch_command

    def command(*args):
        command = launch_command(*args)
        start = command.index("ssrtune.training.distributed") - 1  # ["-m", "ssrtune.training.distributed", arguments...]
        return [*command[:start], str(TESTS / "dying_worker.py"), when, *command[start + 2:]]

    monkeypatch.setattr(distributed, "launch_command", command)


def test_a_process_that_dies_after_the_training_finished_does_not_fail_it(tiny_model, tmp_path, monkeypatch, caplog):
    write_jsonl(tmp_path / "rows.jsonl", rows())  # 6 examples, a global batch of 2: 3 steps
    config = RunConfig(model=ModelConfig(name=str(tiny_model), dtype="float32"), train=TrainConfig(
        batch_size=2, epochs=1, save_every="1000 steps", num_processes=2))
    dying_launch(monkeypatch, "after")

    with caplog.at_level(logging.WARNING, logger="ssrtune.training.distributed"):
        result = launch(config, tmp_path / "rows.jsonl", tmp_path / "ddp")
    assert result["steps"] == 3 and result["launcher_exit_code"] != 0
    assert (tmp_path / "ddp" / "adapter_model.safetensors").exists()
    assert "finished (3 steps" in caplog.text and "a process failed at exit" in caplog.text
    # The cause of the abort at exit: gloo's threads outlived the worker. Each rank has ended them before returning.
    for rank in (0, 1):
        threads = (tmp_path / "ddp" / f"threads-{rank}.txt").read_text().split()
        assert threads and not [name for name in threads if "gloo" in name], threads  # empty: no /proc to read


def test_a_process_that_dies_before_the_training_finished_fails_it_naming_the_exit_code(tiny_model, tmp_path,
                                                                                        monkeypatch):
    write_jsonl(tmp_path / "rows.jsonl", rows())
    config = RunConfig(model=ModelConfig(name=str(tiny_model), dtype="float32"), train=TrainConfig(
        batch_size=2, epochs=1, num_processes=2))
    dying_launch(monkeypatch, "before")

    with pytest.raises(TrainingProcessError, match=r"2 processes failed \(accelerate launch exited with code [1-9]"
                                                   r".*resumes from the last complete checkpoint"):
        launch(config, tmp_path / "rows.jsonl", tmp_path / "ddp")
    assert not (tmp_path / "ddp" / "adapter_model.safetensors").exists()


def test_the_global_batch_must_split_evenly_across_processes():
    from ssrtune.config.run import ConfigError, load_config

    with pytest.raises(ConfigError, match="does not split evenly"):
        load_config(None, ["train.batch_size=8", "train.num_processes=3"])


def test_an_accelerate_config_file_replaces_the_plain_ddp_launch(tmp_path):
    ddp = launch_command(RunConfig(train=TrainConfig(num_processes=2)), tmp_path / "rows.jsonl", tmp_path, tmp_path)
    fsdp = launch_command(RunConfig(train=TrainConfig(num_processes=2, accelerate_config="fsdp.yaml")),
                          tmp_path / "rows.jsonl", tmp_path, tmp_path)
    assert "--multi_gpu" in ddp and "--config_file" not in ddp
    assert fsdp[fsdp.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in fsdp


def test_every_machine_launches_its_share_of_the_processes_meeting_at_machine_0(tmp_path):
    config = RunConfig(train=TrainConfig(num_processes=8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.5",
                                         main_process_port=29511))
    command = launch_command(config, tmp_path / "rows.jsonl", tmp_path, tmp_path)
    flags = {flag: command[command.index(flag) + 1] for flag in
             ("--num_processes", "--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port")}
    # accelerate's --num_processes is the total: it starts 8 // 2 on each machine
    assert flags == {"--num_processes": "8", "--num_machines": "2", "--machine_rank": "1",
                     "--main_process_ip": "10.0.0.5", "--main_process_port": "29511"}
    one = launch_command(RunConfig(train=TrainConfig(num_processes=2)), tmp_path / "rows.jsonl", tmp_path, tmp_path)
    assert one[one.index("--num_machines") + 1] == "1" and "--main_process_ip" not in one


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.num_machines=2", "train.main_process_port=29500"], "main_process_ip is required when num_machines > 1"),
    (["train.num_machines=2", "train.main_process_ip=10.0.0.5"], "main_process_port is required when num_machines"),
    (["train.num_machines=2", "train.machine_rank=2"], "machine_rank 2 is not below num_machines 2"),
    (["train.num_machines=2", "train.main_process_ip=10.0.0.5", "train.main_process_port=29500",
      "train.num_processes=3", "train.batch_size=6"], "num_processes 3 counts the processes of all machines"),
])
def test_a_training_across_machines_needs_machine_0s_address_and_a_share_per_machine(overrides, message):
    from ssrtune.config.run import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_the_machines_are_how_the_training_runs_not_what_it_learns():
    one = TrainConfig(num_processes=2)
    two = TrainConfig(num_processes=2, num_machines=2, machine_rank=1, main_process_ip="10.0.0.5",
                      main_process_port=29500)
    assert one.fingerprint_settings() == two.fingerprint_settings()
