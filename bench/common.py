"""Shared by the benchmarks: the quickstart configuration and data, peak-memory sampling, and result files."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from ssrtune.config.run import RunConfig, load_config  # noqa: E402
from ssrtune.data.schema import Record  # noqa: E402
from ssrtune.stages.data import prepare  # noqa: E402
from ssrtune.storage.artifacts import write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def quickstart(overrides: list[str] = ()) -> RunConfig:
    return load_config(ROOT / "configs" / "quickstart.yaml", list(overrides))


def train_records(config: RunConfig, n: int) -> list[Record]:
    records, _ = prepare(config.data)
    if len(records) < n:
        raise SystemExit(f"the quickstart data has {len(records)} training records, fewer than {n}")
    return records[:n]


def machine() -> dict:
    """What the numbers came from, including how busy the machine was (other processes skew timings)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)}
    flags = fields.get("flags", "").split()
    return {"cpu": fields.get("model name", platform.processor()), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "torch": torch.__version__, "load_average_1min": os.getloadavg()[0]}


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every 20 ms: torch allocates outside
    Python's allocator, so tracemalloc would not see it."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self.before = interval, 0, 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / 2**20


def save(name: str, result: dict) -> Path:
    path = RESULTS / f"{name}.json"
    write_json(path, {"benchmark": name, "machine": machine(), **result})
    return path
