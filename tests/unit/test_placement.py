"""Placement and precision (ssrtune.models.placement), checked with CUDA mocked: one decision for every stage, made for the
device the model is placed on, never by emulation; and the precision in the fingerprints of what it produces."""

from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from ssrtune.config.run import ConfigError, load_config
from ssrtune.models.placement import Gpu, Hardware, Placement, PlacementError, hardware, place, training_placement
from ssrtune.config.fields import ModelConfig
from ssrtune.config.train import TrainConfig

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
VOLTA = Gpu(0, "Tesla V100", (7, 0), 32.0)
AMPERE = Gpu(1, "A100", (8, 0), 80.0)
CPU_ONLY, CPU_BF16 = Hardware(False, ()), Hardware(True, ())


def placed(machine: Hardware, **model) -> tuple:
    p = place(ModelConfig(**model), machine=machine)
    return p.device_map, p.dtype, p.compute


@pytest.mark.parametrize("machine, model, expected", [
    # CPUs: float32 weights; bf16 autocast only where the CPU runs bf16 natively (or when asked for)
    (CPU_ONLY, {}, ("cpu", FP32, FP32)),
    (CPU_BF16, {}, ("cpu", FP32, BF16)),
    (CPU_ONLY, {"dtype": "bfloat16"}, ("cpu", FP32, BF16)),
    (CPU_BF16, {"dtype": "float32"}, ("cpu", FP32, FP32)),
    # one GPU: the weights load in the decided precision, no autocast
    (Hardware(False, (Gpu(0, "A100", (8, 0), 80.0),)), {}, ("cuda:0", BF16, BF16)),
    (Hardware(False, (VOLTA,)), {}, ("cuda:0", FP16, FP16)),
    (Hardware(False, (VOLTA,)), {"dtype": "float32"}, ("cuda:0", FP32, FP32)),
    (Hardware(True, (VOLTA,)), {"device_map": "cpu"}, ("cpu", FP32, BF16)),
    # the device the model is on decides, not whether some GPU has bf16
    (Hardware(False, (VOLTA, AMPERE)), {"device_map": "cuda:1"}, ("cuda:1", BF16, BF16)),
    (Hardware(False, (VOLTA, AMPERE)), {}, ("cuda:0", FP16, FP16)),
    # one model sharded over every GPU: bf16 only if all of them have it
    (Hardware(False, (VOLTA, AMPERE)), {"device_map": "auto"}, ("auto", FP16, FP16)),
    (Hardware(False, (Gpu(0, "H100", (9, 0), 80.0), AMPERE)), {"device_map": "balanced"}, ("balanced", BF16, BF16)),
    (CPU_ONLY, {"device_map": "auto"}, ("cpu", FP32, FP32)),
    (Hardware(False, (Gpu(0, "MI300X", (9, 4), 192.0, rocm=True),)), {}, ("cuda:0", BF16, BF16)),
])
def test_placement_and_precision_rules(machine, model, expected):
    assert placed(machine, **model) == expected


def test_what_the_machine_cannot_give_is_a_clear_error():
    with pytest.raises(PlacementError, match="float16 needs a GPU"):
        placed(CPU_ONLY, dtype="float16")
    with pytest.raises(PlacementError, match=r"GPU 0 \(Tesla V100, compute capability 7.0\) has no native bf16"):
        placed(Hardware(False, (VOLTA,)), dtype="bfloat16")
    with pytest.raises(PlacementError, match="model.device_map 'cuda:2': this machine has 2 visible GPU"):
        placed(Hardware(False, (VOLTA, AMPERE)), device_map="cuda:2")
    assert issubclass(PlacementError, ConfigError)  # the command line prints it as one line


def test_each_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert placed(Hardware(False, (VOLTA, AMPERE))) == ("cuda:1", BF16, BF16)
    assert placed(Hardware(False, (VOLTA, AMPERE)), device_map="cuda") == ("cuda:1", BF16, BF16)


def test_training_keeps_float32_master_weights_for_full_fine_tuning():
    model, gpu = ModelConfig(), Hardware(False, (Gpu(0, "A100", (8, 0), 80.0),))
    with mock.patch("ssrtune.models.placement.hardware", return_value=gpu):
        lora, full = training_placement(model, TrainConfig()), training_placement(model, TrainConfig(full=True))
        framework = training_placement(model, TrainConfig(accelerate_config="fsdp.yaml"))
    assert (lora.dtype, lora.compute) == (BF16, BF16) and (full.dtype, full.compute) == (FP32, BF16)
    assert framework.device_map is None and framework.device_type == "cuda"
    assert full.describe() == "cuda:0, float32 weights under bfloat16 autocast"


def test_the_trainer_gets_the_placements_mixed_precision(tmp_path):
    from ssrtune.training.trainer import sft_config

    def args(placement):
        return sft_config(TrainConfig(), tmp_path, 1, placement=placement)

    cpu = args(Placement("cpu", "cpu", FP32, BF16))
    assert (cpu.bf16, cpu.fp16, cpu.use_cpu) == (True, False, True)
    plain = args(Placement("cpu", "cpu", FP32, FP32))
    assert (plain.bf16, plain.fp16) == (False, False)
    with mock.patch("torch.cuda.is_available", return_value=True), mock.patch("torch.cuda.device_count", return_value=1), \
            mock.patch("torch.cuda.set_device"), \
            mock.patch("transformers.training_args.is_torch_bf16_gpu_available", return_value=True):
        gpu = args(Placement("cuda:0", "cuda", BF16, BF16))
        assert (gpu.bf16, gpu.fp16, gpu.use_cpu) == (True, False, False)


def test_hardware_reads_each_gpus_capability_without_emulation():
    """bf16 is native from compute capability 8.0; torch's is_bf16_supported() would also say yes for older GPUs
    (emulation) and only for the current device, so it must not be asked."""
    props = {0: SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=16 * 2**30),
             1: SimpleNamespace(name="L4", major=8, minor=9, total_memory=24 * 2**30)}
    hardware.cache_clear()
    try:
        with mock.patch("torch.cuda.is_available", return_value=True), \
                mock.patch("torch.cuda.device_count", return_value=2), \
                mock.patch("torch.cuda.get_device_properties", side_effect=props.__getitem__), \
                mock.patch("torch.cuda.is_bf16_supported", side_effect=AssertionError("emulation asked")), \
                mock.patch("torch.version.hip", None):
            machine = hardware()
    finally:
        hardware.cache_clear()
    assert [(g.name, g.capability, g.native_bf16, g.memory_gib) for g in machine.gpus] == [
        ("Tesla T4", (7, 5), False, 16.0), ("L4", (8, 9), True, 24.0)]


def test_precision_is_in_the_fingerprints_of_what_it_produces(tmp_path, records_file, tiny_model):
    """Generation and evaluation results record the precision they were made in: on a CPU with native bf16, auto and
    bfloat16 compute alike (the same fingerprint), float32 differently."""
    from ssrtune.inference.factory import stage_engine_identity
    from ssrtune.storage.fingerprints import parts_hash
    from ssrtune.stages.generate import generation_inputs

    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "train.jsonl").write_text(records_file.read_text())

    def fingerprints(dtype):
        config = load_config(None, [f"run_dir={tmp_path / 'run'}", f"model.name={tiny_model}", f"model.dtype={dtype}"])
        with mock.patch("ssrtune.models.placement.hardware", return_value=CPU_BF16):
            return parts_hash(generation_inputs(config)), stage_engine_identity(config, config.evaluate)

    auto, bf16, fp32 = fingerprints("auto"), fingerprints("bfloat16"), fingerprints("float32")
    assert auto == bf16 and auto[0] != fp32[0]
    assert auto[1] == ["transformers", "float32", "bfloat16"] and fp32[1] == ["transformers", "float32", "float32"]
