"""Numeric precision: whether to compute in bf16, and the autocast context that does it.

Each stage has its own setting (`generate.bf16`, `evaluate.bf16`, an `llm` judge's `bf16`, `train.bf16`); null means
bf16 where the hardware runs it natively, since emulated bf16 is slower than fp32.
"""

from __future__ import annotations

import contextlib

import torch


def bf16_supported() -> bool:
    """bf16 on this device: CUDA with bf16, or a CPU with native bf16 instructions (fp32 emulation is slower)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def autocast(enabled: bool | None, device_type: str):
    """bf16 autocast where asked for, or by default where the hardware runs bf16 natively."""
    use = bf16_supported() if enabled is None else enabled
    return torch.autocast(device_type, dtype=torch.bfloat16) if use else contextlib.nullcontext()
