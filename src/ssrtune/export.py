"""`ssrtune export`: a trained model as a stand-alone model folder that transformers and vLLM load as they are.

The folder holds the weights (a LoRA adapter merged into the base model, or the fully fine-tuned weights) as
safetensors, the tokenizer with its chat template, and a model card (README.md) quoting what the run measured.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from ssrtune.config.fields import ModelConfig
from ssrtune.config.run import plain_name
from ssrtune.errors import ExportError
from ssrtune.models.loading import load_model, load_tokenizer, resolve
from ssrtune.config.train import ModelEntry, TrainConfig
from ssrtune.storage.layout import BASE, TRAINED_MARK, RunLayout
from ssrtune.models.placement import DTYPES
from ssrtune.storage.rundir import run_guard
from ssrtune.storage.permissions import widen_to_umask
from ssrtune.storage.artifacts import read_json, write_text_atomic


def export(run_dir: Path, name: str, out: Path, dtype: str = "auto") -> Path:
    """Write models/<name> of `run_dir` to `out` (which must not exist yet, or be empty) and return `out`.

    dtype `auto`: a merged LoRA model takes the precision its base checkpoint declares, fully fine-tuned weights keep
    the precision they were trained in. The run directory is held (its lock) meanwhile, so that a `train --fresh`
    cannot delete the model being read; the model is written to a temporary folder beside `out`, renamed when whole,
    and the temporary folder removed when anything fails.
    """
    run_dir, out = Path(run_dir), Path(out)
    plain_name(name, "model")
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run directory")
    if dtype != "auto" and dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: choose auto, {', '.join(DTYPES)}")
    with run_guard(run_dir):
        layout = RunLayout(run_dir)
        trained = layout.model_folder(name)
        if not layout.trained(name).exists():
            finished = sorted(done.parent.name for done in layout.models.glob(f"*/{TRAINED_MARK}"))
            raise ExportError(f"{trained}: no finished training of model {name!r} (run `ssrtune train` first); "
                              + (f"finished in this run: {', '.join(finished)}" if finished else "this run has none yet"))
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ExportError(f"{out} already exists and is not empty: choose a new folder")
        config = _run_config(run_dir)
        model_config = ModelConfig.model_validate(config.get("model") or {})
        lora = (trained / "adapter_config.json").exists()
        precision = DTYPES[dtype] if dtype != "auto" else _declared_dtype(resolve(model_config.name) if lora
                                                                           else trained)
        # Loaded in the exported precision (a 7B model in float32 would need 28 GB of memory); PEFT adds the float32
        # LoRA product to each weight in that precision.
        model = load_model(model_config, adapter=trained, dtype=precision)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            load_tokenizer(model_config).save_pretrained(tmp)
            card = model_card(run_dir, name, config, lora=lora, dtype=str(model.dtype).removeprefix("torch."))
            write_text_atomic(tmp / "README.md", card)
            widen_to_umask(tmp)  # mkdtemp made it 0700, safetensors its files 0600
            if out.exists():
                out.rmdir()  # empty, checked above
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _run_config(run_dir: Path) -> dict:
    path = RunLayout(run_dir).config
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ExportError(f"{path}: {err}") from err
    if not isinstance(config, dict):
        raise ExportError(f"{path}: not a run configuration")
    return config


def _declared_dtype(folder: str | Path) -> torch.dtype:
    declared = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    name = declared.get("dtype") or declared.get("torch_dtype") or "float32"
    return DTYPES.get(str(name).removeprefix("torch."), torch.float32)


def model_card(run_dir: Path, name: str, config: dict, lora: bool, dtype: str) -> str:
    """README.md of the exported model: the method, its training targets, the judge, what the run measured, the
    configuration. Every number comes from a file of the run."""
    base = (config.get("model") or {}).get("name", ModelConfig().name)
    layout = RunLayout(run_dir)
    training = read_json(layout.trained(name))
    method = training.get("method", name)  # recorded by the training; a model trained before was named after it
    entry = next((m for m in config.get("models") or [] if m.get("name") == name), {"name": name, "method": method})
    train = ModelEntry.model_validate(entry).resolve(TrainConfig.model_validate(config.get("train") or {}))
    stats_path = layout.target_stats(method)
    stats = read_json(stats_path) if stats_path.exists() else {}
    front = {"library_name": "transformers", "tags": ["ssrtune", f"ssrtune-{method}", "selective-self-rehearsal"],
             **({"base_model": base} if _hub_id(base) else {})}
    weights = (f"LoRA (r={train.lora_r}, alpha={train.lora_alpha}) merged into the base weights" if lora
               else "full fine-tuning")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {config.get('name', run_dir.name)}: {name}", "",
             f"`{base}` fine-tuned by ssrtune with the method **{method}** (Selective Self-Rehearsal and its "
             f"relatives, arXiv 2409.04787): {weights}; weights in {dtype}. {training.get('steps')} optimizer steps, final training loss "
             f"{_number(training.get('train_loss'))}.", "",
             "## Training targets", "", f"`train/{method}.stats.json`: {stats.get('n', '?')} examples.", "",
             "| source | share |", "|---|---|",
             *[f"| {source} | {share:.1%} |" for source, share in (stats.get("shares") or {}).items()], ""]
    lines += _prompt_format(stats.get("prompt"))
    if stats.get("judge"):
        lines += ["Judge verdicts on the own answers: "
                  + ", ".join(f"{verdict} {count}" for verdict, count in stats["judge"].items()) + ".", ""]
    lines += ["## Judge", "", "```yaml", yaml.safe_dump(config.get("judge"), sort_keys=False).strip(), "```", "",
              "## What the run measured", "", *_measurements(run_dir, name), "",
              "## Configuration", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def _prompt_format(prompt: dict | None) -> list[str]:
    """The prompt format the model was trained with (train/<method>.stats.json): prompt it the same way."""
    lines = ["## Prompt format", ""]
    if not prompt:
        return lines + ["Not recorded (trained before ssrtune recorded it).", ""]
    if prompt["system_prompt"]:
        lines += ["System prompt of every training example:", "", "```text", prompt["system_prompt"], "```", ""]
    elif prompt["distinct_system_prompts"]:
        lines += [f"Each record's own system prompt ({prompt['distinct_system_prompts']} distinct; "
                  f"{prompt['records_without_system_prompt']} records without one).", ""]
    else:
        lines += ["No system prompt: the records' own turns, rendered by the chat template.", ""]
    if prompt["system_folded_into_first_user_turn"]:
        lines += ["The chat template has no system role: the system prompt opens the first user turn, followed by a "
                  "blank line.", ""]
    if prompt["last_user_turn"]:
        lines += [f"The last user turn holds the document, then the question: `{prompt['last_user_turn']}`.", ""]
    return lines


def _measurements(run_dir: Path, name: str) -> list[str]:
    """The run's numbers about this model beside the base model's, from the report's own analysis of the run (the
    numbers report.json holds), each with its 95% interval."""
    from ssrtune.report import analyse

    try:
        summaries = {m["name"]: m for m in analyse([run_dir])["models"]}
    except FileNotFoundError:
        summaries = {}
    if name not in summaries:
        return ["The trained model was not evaluated (`ssrtune evaluate`)."]
    base = summaries.get(BASE, {})
    mine = summaries[name]
    rows = []
    for suite in ("task", "hard", "ood"):
        if mine.get(suite):
            rows.append((f"{suite}: accuracy", _estimate((base.get(suite) or {}).get("accuracy")),
                         _estimate(mine[suite]["accuracy"])))
            for key, value in (mine[suite].get("grounded") or {}).items():
                rows.append((f"{suite}: {key}", _number(((base.get(suite) or {}).get("grounded") or {}).get(key)),
                             _number(value)))
    if mine.get("kl"):
        rows.append(("KL from base (nats/token, mean over prompts)", "0 (reference)", _estimate(mine["kl"])))
    if mine.get("gold_ll_change"):
        rows.append(("change of the gold answers' log-likelihood (mean over benchmarks)", "",
                     _estimate(mine["gold_ll_change"])))
    for name, bench in (mine.get("retention") or {}).items():
        change = bench.get("change")
        note = "" if change is None else f" (change {_estimate(change)}{'' if change['resolved'] else ', unresolved'})"
        rows.append((f"retention: {name} {bench['metric']}",
                     _estimate(((base.get("retention") or {}).get(name))), _estimate(bench) + note))
    return ["From the run's report (`ssrtune report`; 95% intervals in brackets):", "",
            f"| measure | base | {name} |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows]]


def _estimate(estimate: dict | None) -> str:
    """A level (`mean`) or a difference (`diff`) with its 95% interval."""
    if not estimate:
        return ""
    value = estimate.get("mean", estimate.get("diff"))
    interval = estimate.get("ci95")
    return _number(value) + (f" [{_number(interval[0])}, {_number(interval[1])}]" if interval else "")


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).exists() and not name.endswith(".gguf")
