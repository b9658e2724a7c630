"""Training at scale, checked on the CPU: the global batch as micro-batches, gradient checkpointing, one GPU per
process, QLoRA's requirements, checkpoint intervals, and what the training fingerprint holds."""

from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from ssrtune.training.checkpoints import TimedCheckpoints, save_arguments
from ssrtune.config.run import ConfigError, ModelConfig, RunConfig, TrainConfig, load_config
from ssrtune.config.train import parse_save_every
from ssrtune.training.distributed import train_method
from ssrtune.models.loading import load_model
from ssrtune.models.placement import Hardware, Placement, process_count
from ssrtune.storage.artifacts import write_jsonl
from ssrtune.storage.fingerprints import fingerprint
from ssrtune.training.trainer import OneDeviceSFTConfig, load_for_training, sft_config
from tests.training_rows import fit, rows


@pytest.mark.parametrize("batch, micro, processes, plan", [
    (8, None, 1, (8, 1)), (8, None, 2, (4, 1)), (8, 2, 1, (2, 4)), (8, 2, 2, (2, 2)), (12, 3, 2, (3, 2)),
])
def test_the_global_batch_is_micro_batches_times_processes_times_accumulation(batch, micro, processes, plan):
    assert TrainConfig(batch_size=batch, micro_batch_size=micro).batch_plan(processes) == plan


def test_a_batch_that_does_not_divide_is_refused_with_its_numbers():
    with pytest.raises(ConfigError, match="batch_size 8 is not a whole number of micro_batch_size 3"):
        load_config(None, ["train.batch_size=8", "train.micro_batch_size=3"])
    with pytest.raises(ConfigError, match="batch_size 8 does not split evenly across num_processes 3"):
        load_config(None, ["train.batch_size=8", "train.num_processes=3"])
    auto = RunConfig(train=TrainConfig(batch_size=8, num_processes="auto"))
    with mock.patch("torch.cuda.device_count", return_value=3), \
            pytest.raises(ConfigError, match="does not split evenly across num_processes 3"):
        train_method(auto, "unused.jsonl", "unused")


def test_removed_settings_name_their_replacement():
    with pytest.raises(ConfigError, match="`gradient_accumulation_steps` was replaced by train.micro_batch_size"):
        load_config(None, ["train.gradient_accumulation_steps=2"])
    with pytest.raises(ConfigError, match="`save_steps` was replaced by train.save_every"):
        load_config(None, ["train.save_steps=10"])


def test_auto_processes_are_the_visible_gpus_or_one():
    auto = TrainConfig(num_processes="auto")
    with mock.patch("torch.cuda.device_count", return_value=0):
        assert process_count(auto) == 1
    with mock.patch("torch.cuda.device_count", return_value=4):
        assert process_count(auto) == 4
    assert process_count(TrainConfig(num_processes=2)) == 2


def test_micro_batches_and_gradient_checkpointing_train_the_same_adapter(tiny_model, tmp_path):
    """Three optimizer steps over 6 examples: whole batches, 6 micro-batches of 1 with accumulation, and with
    gradient checkpointing. The loss is normalised by the answer tokens of the whole global batch in every case (a
    mean per micro-batch instead moves some weights by 1e-2 here)."""
    settings = {"epochs": 3, "batch_size": 6, "save_every": "1000 steps"}
    whole, whole_out = fit(tiny_model, tmp_path / "whole", **settings)
    micro, micro_out = fit(tiny_model, tmp_path / "micro", micro_batch_size=1, **settings)
    recomputed, recomputed_out = fit(tiny_model, tmp_path / "recomputed", gradient_checkpointing=True, **settings)
    assert (micro["micro_batch_size"], micro["gradient_accumulation_steps"]) == (1, 6)
    assert (whole["micro_batch_size"], whole["gradient_accumulation_steps"]) == (6, 1)
    assert recomputed["gradient_checkpointing"] and not whole["gradient_checkpointing"]
    assert whole["steps"] == micro["steps"] == recomputed["steps"] == 3
    reference = load_file(whole_out / "adapter_model.safetensors")
    # Float32 sums in another order (1e-6 seen): the bound of tests/stages/test_distributed.py, 1e-3 of steps x lr.
    tolerance = 1e-3 * 3 * 3e-3
    for out in (micro_out, recomputed_out):
        adapter = load_file(out / "adapter_model.safetensors")
        for name, weight in reference.items():
            torch.testing.assert_close(adapter[name], weight, rtol=0, atol=tolerance)
    assert all(w.abs().max() > 100 * tolerance for n, w in reference.items() if "lora_B" in n)


CPU_FP32 = Placement("cpu", "cpu", torch.float32, torch.float32)


def test_gradient_checkpointing_is_on_by_default_above_a_billion_parameters(tmp_path):
    args = {size: sft_config(TrainConfig(), tmp_path, size, placement=CPU_FP32) for size in (135_000_000, 7_200_000_000)}
    assert not args[135_000_000].activation_checkpointing and args[7_200_000_000].activation_checkpointing
    forced = sft_config(TrainConfig(gradient_checkpointing=False), tmp_path, 7_200_000_000, placement=CPU_FP32)
    assert not forced.activation_checkpointing


def test_lora_tells_ddp_that_no_parameter_goes_unused(tmp_path):
    assert sft_config(TrainConfig(), tmp_path, 1, placement=CPU_FP32).ddp_find_unused_parameters is False
    assert sft_config(TrainConfig(full=True), tmp_path, 1, placement=CPU_FP32).ddp_find_unused_parameters is None


def test_one_process_on_a_machine_with_several_gpus_trains_on_one():
    """The Trainer wraps the model in DataParallel when `n_gpu` > 1, and multiplies the batch by it."""
    from trl import SFTConfig

    settings = {"output_dir": "unused", "use_cpu": False, "bf16": False, "report_to": "none",
                "per_device_train_batch_size": 2}
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=4), mock.patch("torch.cuda.set_device"):
        plain, ours = SFTConfig(**settings), OneDeviceSFTConfig(**settings)
        assert (plain.n_gpu, plain.train_batch_size) == (4, 8)  # what the Trainer would do with 4 GPUs
        assert (ours.n_gpu, ours.train_batch_size) == (1, 2)


def test_qlora_is_refused_without_cuda_and_with_full_fine_tuning(tiny_model):
    with mock.patch("ssrtune.models.placement.hardware", return_value=Hardware(False, ())), \
            pytest.raises(ConfigError, match="train.quantization: 4bit .* needs a CUDA GPU"):
        load_for_training(ModelConfig(name=str(tiny_model)), TrainConfig(quantization="4bit"))
    with pytest.raises(ConfigError, match="not with full"):
        load_config(None, ["train.quantization=4bit", "train.full=true"])


def test_load_model_places_weights_in_the_asked_device_and_precision(tiny_model):
    config = ModelConfig(name=str(tiny_model))
    default = load_model(config)
    assert {(p.device.type, p.dtype) for p in default.parameters()} == {("cpu", torch.float32)}
    half = load_model(config, device="cpu", dtype=torch.bfloat16)
    assert {(p.device.type, p.dtype) for p in half.parameters()} == {("cpu", torch.bfloat16)}
    # on the CPU, training keeps the float32 weights whose speed docs/PERFORMANCE.md measured
    with mock.patch("ssrtune.models.placement.hardware", return_value=Hardware(True, ())):
        for_training, placement = load_for_training(config, TrainConfig())
    assert {p.dtype for p in for_training.parameters()} == {torch.float32}
    assert (placement.device_type, placement.compute) == ("cpu", torch.bfloat16)


@pytest.mark.parametrize("text, parsed", [
    ("0.25 epoch", ("epoch", 0.25)), ("2 epochs", ("epoch", 2.0)), ("200 steps", ("steps", 200.0)),
    ("1 step", ("steps", 1.0)), ("30m", ("seconds", 1800.0)), ("2h", ("seconds", 7200.0)), ("90s", ("seconds", 90.0)),
])
def test_save_every_syntax(text, parsed):
    assert parse_save_every(text) == parsed


@pytest.mark.parametrize("text", ["often", "0 steps", "1.5 steps", "30 minutes", "-1h", ""])
def test_a_bad_save_interval_names_the_field(text):
    with pytest.raises(ConfigError, match="train.save_every"):
        load_config(None, [f"train.save_every={text!r}"])


def test_save_intervals_become_trainer_settings():
    assert save_arguments(TrainConfig(save_every="7 steps")) == {"save_strategy": "steps", "save_steps": 7}
    # an epoch fraction is the Trainer's fraction of all steps
    assert save_arguments(TrainConfig(save_every="0.5 epoch", epochs=2)) == {"save_strategy": "steps",
                                                                             "save_steps": 0.25}
    assert save_arguments(TrainConfig(save_every="1 epoch", epochs=1)) == {"save_strategy": "no"}
    assert save_arguments(TrainConfig(save_every="30m")) == {"save_strategy": "no"}


def test_a_time_interval_asks_for_a_checkpoint_when_it_has_passed():
    from transformers import TrainerControl

    clock = iter([0.0, 100.0, 1000.0, 1950.0, 1960.0, 2000.0])
    args = mock.Mock(world_size=1)
    with mock.patch("ssrtune.training.checkpoints.time.monotonic", lambda: next(clock)):
        callback = TimedCheckpoints(1800.0)  # created at 0; the training starts at 100
        callback.on_train_begin(args, None, TrainerControl())
        asked = [callback.on_step_end(args, None, TrainerControl()).should_save for _ in range(3)]
    assert asked == [False, True, False]  # 900 s after the start; 1850 s; 40 s after that checkpoint


def test_an_epoch_fraction_checkpoints_within_the_epoch(tiny_model, tmp_path):
    # 6 examples, batch 1: 6 steps an epoch; half an epoch = every 3 steps
    result, out = fit(tiny_model, tmp_path, epochs=1, batch_size=1, save_every="0.5 epoch")
    assert result["steps"] == 6 and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3",
                                                                                         "checkpoint-6"]


def test_a_time_interval_checkpoints_during_training(tiny_model, tmp_path):
    _, out = fit(tiny_model, tmp_path, epochs=1, batch_size=2, save_every="0.000001s")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]  # the 2 kept


def test_how_the_training_runs_is_not_in_its_fingerprint():
    base = TrainConfig().fingerprint_settings()
    for change in [{"save_every": "30m"}, {"micro_batch_size": 2}, {"gradient_checkpointing": True},
                   {"report_to": "tensorboard"}, {"num_processes": 2}, {"num_processes": "auto"},
                   {"accelerate_config": "fsdp.yaml"}, {"keep_checkpoints": True}]:
        assert TrainConfig(**change).fingerprint_settings() == base, change
    for change in [{"learning_rate": 1e-4}, {"batch_size": 4}, {"quantization": "4bit"}, {"full": True},
                   {"loss_type": "dft"}, {"kl_beta": 0.1}]:
        assert TrainConfig(**change).fingerprint_settings() != base, change


def test_a_setting_added_later_leaves_the_models_trained_before_it_current():
    # The hashes the code before train.loss_type and train.kl_beta computed: a model it trained keeps its fingerprint.
    assert fingerprint(TrainConfig().fingerprint_settings()) == "5f10067d1d228651"
    assert fingerprint(TrainConfig(kl_beta=0).fingerprint_settings()) == "5f10067d1d228651"
    assert fingerprint(TrainConfig(full=True, learning_rate=2e-5, seed=1).fingerprint_settings()) == "cc21e07830e232e9"
    assert fingerprint(TrainConfig(loss_type="dft").fingerprint_settings()) != "5f10067d1d228651"
    assert fingerprint(TrainConfig(kl_beta=0.1).fingerprint_settings()) != "5f10067d1d228651"


def test_a_kl_penalty_is_refused_with_full_fine_tuning_and_with_trls_loss():
    with pytest.raises(ConfigError, match=r"train: kl_beta > 0 needs LoRA .* with full: true"):
        load_config(None, ["train.kl_beta=0.1", "train.full=true"])
    with pytest.raises(ConfigError, match=r"train: kl_beta > 0 .* loss_type dft"):
        load_config(None, ["train.kl_beta=0.1", "train.loss_type=dft"])
    with pytest.raises(ConfigError, match=r"models.0.train: kl_beta > 0 needs LoRA"):
        load_config(None, ["train.kl_beta=0.1", "models=[{name: m, method: sft, train: {full: true}}]"])


def test_training_in_this_process_reads_the_method_rows(tiny_model, tmp_path):
    write_jsonl(tmp_path / "ssr.jsonl", [{**row, "source": "gold"} for row in rows()])
    config = RunConfig(name="tiny", model=ModelConfig(name=str(tiny_model), dtype="float32"), train=TrainConfig(
        epochs=1, batch_size=3, num_processes="auto"))
    with mock.patch("torch.cuda.device_count", return_value=0):
        result = train_method(config, tmp_path / "ssr.jsonl", tmp_path / "ssr")
    assert result["steps"] == 2 and result["processes"] == 1 and (tmp_path / "ssr" / "adapter_model.safetensors").exists()


def test_a_logger_without_its_extra_is_one_clear_error(tiny_model, tmp_path):
    import sys

    from ssrtune.extras import MissingExtraError

    with mock.patch.dict(sys.modules, {"trackio": None}), \
            pytest.raises(MissingExtraError, match=r"pip install 'ssrtune\[trackio\]'"):
        fit(tiny_model, tmp_path, report_to="trackio")
