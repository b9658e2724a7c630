"""`ssrtune export`: the merged model computes what the adapter computed, loads as a plain transformers model, and
its card quotes the run's own numbers."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from ssrtune import pipeline
from ssrtune.config.run import ModelConfig, TrainConfig
from ssrtune.report import analyse
from ssrtune.export import ExportError, export
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.storage.artifacts import read_json, write_json
from ssrtune.training.trainer import train
from tests.commands import cli
from tests.tiny_run import TinyRun, write_records
from tests.training_rows import rows


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    """A finished run on the tiny model: ssr trained with LoRA, evaluated on the task and the KL from the base."""
    folder = tmp_path_factory.mktemp("export-run")
    config = TinyRun(folder, tiny_model, write_records(folder / "records.jsonl")).config(
        "name=tiny", "methods=[ssr]", "generate.batch_size=6", "generate.max_new_tokens=4", "train.epochs=3",
        "train.batch_size=3", "data.system_prompt=Answer in a few words.", "train.learning_rate=3e-3",
        "evaluate.batch_size=6", "evaluate.max_new_tokens=4",
        "evaluate.retention={benchmarks: [], kl_prompts: 2, kl_max_new_tokens: 4}")
    saved = os.umask(0o022)  # the usual one, whatever the machine's: a 077 umask would hide safetensors' 0600
    try:
        pipeline.run(config)
    finally:
        os.umask(saved)
    return config.path


def test_the_exported_model_computes_the_adapter_models_logits(run_dir, tiny_model, tmp_path):
    from peft import PeftModel

    export(run_dir, "ssr", tmp_path / "ssr")
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "README.md"} <= {
        p.name for p in (tmp_path / "ssr").iterdir()}
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "ssr")  # plain transformers, no ssrtune, no peft
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, run_dir / "models" / "ssr").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ssr")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Who wrote the letter?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ours, theirs = exported(**prompt).logits, adapter(**prompt).logits
    torch.testing.assert_close(ours, theirs)  # float32's default tolerances: W + BA against W x + B(A x)
    untrained = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)(**prompt).logits
    assert (untrained - theirs).abs().max() > 100 * (ours - theirs).abs().max()  # the adapter changed something
    assert tokenizer.chat_template == load_tokenizer(ModelConfig(name=str(tiny_model))).chat_template


def test_the_model_card_quotes_the_run(run_dir, tmp_path):
    card = (export(run_dir, "ssr", tmp_path / "ssr") / "README.md").read_text(encoding="utf-8")
    task = read_json(run_dir / "eval" / "ssr" / "task.json")
    kl = read_json(run_dir / "eval" / "ssr" / "retention.json")["kl"]["mean_kl"]
    stats = read_json(run_dir / "train" / "ssr.stats.json")
    training = read_json(run_dir / "models" / "ssr" / "ssrtune_train.json")
    assert "**ssr**" in card and "LoRA (r=16, alpha=32) merged" in card
    models = {m["name"]: m for m in analyse([run_dir])["models"]}
    accuracy = {name: models[name]["task"]["accuracy"] for name in ("base", "ssr")}
    assert accuracy["ssr"]["mean"] == task["accuracy"]
    cells = [f"{a['mean']:.4g} [{a['ci95'][0]:.4g}, {a['ci95'][1]:.4g}]" for a in accuracy.values()]
    assert f"| task: accuracy | {cells[0]} | {cells[1]} |" in card
    kl_summary = models["ssr"]["kl"]
    assert kl_summary["token_mean"] == kl > 0
    assert (f"| KL from base (nats/token, mean over prompts) | 0 (reference) | {kl_summary['mean']:.4g} "
            f"[{kl_summary['ci95'][0]:.4g}, {kl_summary['ci95'][1]:.4g}] |") in card
    for source, share in stats["shares"].items():
        assert f"| {source} | {share:.1%} |" in card
    assert f"final training loss {training['train_loss']:.4g}" in card
    prompt = card.split("## Prompt format")[1].split("##")[0]  # the format the model was trained with
    assert "```text\nAnswer in a few words.\n```" in prompt and "no system role" not in prompt
    assert "`Document:\\n{context}\\n\\nQuestion: {question}`" in prompt
    config = yaml.safe_load(card.split("## Configuration")[1].split("```yaml")[1].split("```")[0])
    assert config == yaml.safe_load((run_dir / "config.yaml").read_text())
    judge = yaml.safe_load(card.split("## Judge")[1].split("```yaml")[1].split("```")[0])
    assert judge == config["judge"]


def test_full_fine_tuning_exports_the_trained_weights(tiny_model, tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "full", "model": {"name": str(tiny_model)}}))
    model_config = ModelConfig(name=str(tiny_model))
    result = train(load_model(model_config), load_tokenizer(model_config), rows(),
                   TrainConfig(full=True, epochs=1, batch_size=3, learning_rate=1e-3), run / "models" / "sft")
    write_json(run / "models" / "sft" / "ssrtune_train.json", result)
    out = export(run, "sft", tmp_path / "out")
    exported = AutoModelForCausalLM.from_pretrained(out).state_dict()
    trained = load_model(model_config, adapter=run / "models" / "sft").state_dict()
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
    assert "full fine-tuning" in (out / "README.md").read_text()


def test_export_refuses_to_overwrite_or_to_export_what_was_not_trained(run_dir, tmp_path, monkeypatch, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export(run_dir, "ssr", taken)
    assert (taken / "mine.txt").read_text() == "keep me"
    result = cli(monkeypatch, capsys, "export", run_dir, "sft", "--out", tmp_path / "sft")
    assert result.returncode == 2 and "no finished training of model 'sft'" in result.stderr
    assert "finished in this run: ssr" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sft").exists()


def test_trained_and_exported_weights_are_readable_as_the_umask_allows(run_dir, tmp_path):
    # safetensors creates its files 0600 and the export's temporary folder is made 0700; every other file of a run
    # is as readable as the umask allows: under 022 (set here and by the fixture), 0644 and 0755
    saved = os.umask(0o022)
    try:
        out = export(run_dir, "ssr", tmp_path / "ssr")
    finally:
        os.umask(saved)
    paths = [p for folder in (run_dir / "models" / "ssr", out) for p in [folder, *folder.rglob("*")]]
    assert any(p.suffix == ".safetensors" for p in paths)
    allowed = {p: 0o755 if p.is_dir() else 0o644 for p in paths}
    assert [p for p in paths if p.stat().st_mode & allowed[p] != allowed[p]] == []


def test_export_holds_the_run_and_checks_the_model_name(run_dir, tmp_path):
    from ssrtune.config.run import ConfigError
    from ssrtune.storage.rundir import RunDirInUseError
    from tests.commands import HOLDER, env

    with pytest.raises(ConfigError, match="model '../ssr'"):
        export(run_dir, "../ssr", tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunDirInUseError, match=f"in use by process {holder.pid}"):
            export(run_dir, "ssr", tmp_path / "out")
    finally:
        holder.communicate("", timeout=30)
    assert not (tmp_path / "out").exists()


def test_a_failed_export_leaves_no_temporary_folder(run_dir, tmp_path, monkeypatch):
    import ssrtune.export

    def broken_card(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(ssrtune.export, "model_card", broken_card)
    with pytest.raises(OSError, match="disk gone"):
        export(run_dir, "ssr", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
