"""Where a model runs and in which precision: the one decision every stage (generation, judging, evaluation and
training) takes its model's placement from, and what `ssrtune doctor` prints.

`model.dtype: auto` is bf16 on GPUs that run it natively (compute capability 8.0 and up, and ROCm), fp16 on older
GPUs, and on a CPU float32 weights computing under bf16 autocast where the CPU has native bf16 instructions
(AVX512-BF16 or AMX) -- the path whose speed docs/PERFORMANCE.md measured -- and plain float32 where it has not
(emulated bf16 is slower than float32). The decision looks at the devices the model is placed on, never at whether
some GPU exists elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ssrtune.config.errors import ConfigError
from ssrtune.config.fields import ModelConfig

if TYPE_CHECKING:
    from ssrtune.config.train import TrainConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SHARDED = ("auto", "balanced", "balanced_low_0", "sequential")  # transformers' device_map strategies


class PlacementError(ConfigError):
    """A device or precision this machine cannot give (e.g. float16 without a GPU)."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory_gib: float
    rocm: bool = False

    @property
    def native_bf16(self) -> bool:
        # What torch.cuda.is_bf16_supported(including_emulation=False) checks, for this GPU rather than the current one.
        return self.rocm or self.capability[0] >= 8


@dataclass(frozen=True)
class Hardware:
    cpu_native_bf16: bool
    gpus: tuple[Gpu, ...]


@functools.cache
def hardware() -> Hardware:
    """This machine's CPU bf16 support and visible CUDA (or ROCm) GPUs, asked once per process."""
    cpu = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(Gpu(index, props.name, (props.major, props.minor), props.total_memory / 2**30,
                            rocm=bool(torch.version.hip)))
    return Hardware(bool(cpu), tuple(gpus))


@dataclass(frozen=True)
class Placement:
    """`device_map` is what `from_pretrained` gets ("cpu", "cuda:0", a sharding strategy; None: the training
    framework places the weights), `device_type` cpu or cuda, `dtype` the weights' precision, `compute` the precision
    matrix products run in: the weights' own, or bf16 under autocast over float32 weights (CPUs, and the master
    weights of full fine-tuning)."""

    device_map: str | None
    device_type: str
    dtype: torch.dtype
    compute: torch.dtype

    def autocast(self):
        """The autocast context that makes float32 weights compute in `compute`; nothing when they already do."""
        if self.compute == self.dtype:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.compute)

    @classmethod
    def of(cls, model: torch.nn.Module) -> Placement:
        """Where a model already is, computing in its own precision (no autocast)."""
        parameter = next(model.parameters())
        return cls(str(parameter.device), parameter.device.type, parameter.dtype, parameter.dtype)

    @property
    def precision(self) -> tuple[str, str]:
        """(weights, compute): what the outputs depend on, for fingerprints."""
        return _name(self.dtype), _name(self.compute)

    def describe(self) -> str:
        where = self.device_map or "placed by the accelerate config"
        if self.compute == self.dtype:
            return f"{where}, {_name(self.dtype)}"
        return f"{where}, {_name(self.dtype)} weights under {_name(self.compute)} autocast"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def place(model: ModelConfig, *, full_training: bool = False, framework_places: bool = False,
          machine: Hardware | None = None) -> Placement:
    """The device(s) and precision of `model` in this process, from `model.device_map` and `model.dtype`.

    `full_training`: the weights stay float32 (the optimizer's master copy), computing in the decided precision.
    `framework_places`: an accelerate config (FSDP, DeepSpeed) places the weights, on GPUs where there are some.
    """
    machine = machine or hardware()
    rank = int(os.environ.get("LOCAL_RANK", 0))
    setting = model.device_map
    if framework_places:
        device, gpus = None, list(machine.gpus)
    elif setting is None:
        device = f"cuda:{rank}" if rank < len(machine.gpus) else "cpu"
        gpus = [machine.gpus[rank]] if device != "cpu" else []
    elif setting in SHARDED:
        device, gpus = (setting, list(machine.gpus)) if machine.gpus else ("cpu", [])
    elif setting == "cpu":
        device, gpus = "cpu", []
    else:
        index = int(setting.partition(":")[2] or rank)
        if index >= len(machine.gpus):
            raise PlacementError(f"model.device_map {setting!r}: this machine has {len(machine.gpus)} visible GPU(s)")
        device, gpus = f"cuda:{index}", [machine.gpus[index]]
    compute = _compute_dtype(model.dtype, gpus, machine)
    weights = torch.float32 if not gpus or full_training else compute
    return Placement(device, "cuda" if gpus else "cpu", weights, compute)


def training_placement(model: ModelConfig, train: TrainConfig) -> Placement:
    """Where this process trains and in which precision: LoRA freezes the base model, so on a GPU it stays in the
    decided precision (half the memory; PEFT keeps the adapter in float32); full fine-tuning keeps float32 master
    weights under bf16 (or fp16) autocast, and so does the CPU, whose speed was measured that way
    (docs/PERFORMANCE.md). Under an accelerate config file (FSDP, DeepSpeed) the framework places the weights."""
    return place(model, full_training=train.full, framework_places=bool(train.accelerate_config))


def process_count(train: TrainConfig) -> int:
    """`train.num_processes`, the processes of all machines, with `auto` = one process per visible GPU (1 without
    GPUs) on each of `train.num_machines` machines (accelerate starts as many on each)."""
    if train.num_processes != "auto":
        return train.num_processes
    return max(torch.cuda.device_count(), 1) * train.num_machines


def _compute_dtype(setting: str, gpus: list[Gpu], machine: Hardware) -> torch.dtype:
    if not gpus:
        if setting == "float16":
            raise PlacementError("model.dtype float16 needs a GPU; on a CPU use auto, float32 or bfloat16")
        bf16 = setting == "bfloat16" or (setting == "auto" and machine.cpu_native_bf16)
        return torch.bfloat16 if bf16 else torch.float32
    native = all(gpu.native_bf16 for gpu in gpus)
    if setting == "auto":
        return torch.bfloat16 if native else torch.float16
    if setting == "bfloat16" and not native:
        old = next(gpu for gpu in gpus if not gpu.native_bf16)
        raise PlacementError(f"model.dtype bfloat16: GPU {old.index} ({old.name}, compute capability "
                             f"{old.capability[0]}.{old.capability[1]}) has no native bf16; use auto or float16")
    return DTYPES[setting]
