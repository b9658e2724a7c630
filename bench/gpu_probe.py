"""The probe of bench/gpu.py: in every process of the check (the check's own, and through a `sitecustomize` the
processes its stages start: vLLM's engine, the training child), the device and dtype of each model call, and the
process's peak GPU memory (torch.cuda.max_memory_allocated) when it exits, appended to one JSON-lines log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

LAST_LOGGED: dict[tuple, float] = {}  # (model class, device, dtype) -> when the probe last logged it; cleared per stage


def install_probe(log_path: str) -> None:
    """In the calling process: log the device and dtype of a model's parameters when it is called (at most once a
    second per model class and placement), and the process's peak GPU memory when it exits. Only transformers
    models are wrapped, so layers run at full speed."""
    import atexit

    from transformers import PreTrainedModel

    log, last = open(log_path, "a", buffering=1, encoding="utf-8"), LAST_LOGGED

    def probed_call(module, *args, **kwargs):
        parameter = next(module.parameters(), None)
        if parameter is not None:
            key, now = (type(module).__name__, parameter.device.type, str(parameter.dtype)), time.time()
            if now - last.get(key, 0.0) >= 1.0:
                last[key] = now
                log.write(json.dumps({"t": now, "model": key[0], "device": key[1], "dtype": key[2]}) + "\n")
        return torch.nn.Module.__call__(module, *args, **kwargs)

    def peak_at_exit():
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            log.write(json.dumps({"t": time.time(), "pid": os.getpid(), "device": "cuda",
                                  "peak_gib": torch.cuda.max_memory_allocated() / 2**30}) + "\n")

    PreTrainedModel.__call__ = probed_call
    atexit.register(peak_at_exit)


SITECUSTOMIZE = """import os
if os.environ.get("SSRTUNE_GPU_PROBE"):
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_probe", os.environ["SSRTUNE_GPU_PROBE_MODULE"])
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe.install_probe(os.environ["SSRTUNE_GPU_PROBE"])
"""


def probe_children(work: Path, log_path: Path) -> None:
    """Every Python process started from now on (vLLM's engines, the training child) installs the probe."""
    site = work / "probe-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    # vLLM's engine core in the engine's own process (not a further one), where the probe records its peak
    os.environ.update(SSRTUNE_GPU_PROBE=str(log_path), SSRTUNE_GPU_PROBE_MODULE=str(Path(__file__).resolve()),
                      VLLM_ENABLE_V1_MULTIPROCESSING="0")
