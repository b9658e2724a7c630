import importlib
import pkgutil

import pytest

from ssrtune.config.run import ConfigError, load_config, load_judge_config
from tests.paths import ROOT


def test_defaults_are_the_quickstart_task():
    config = load_config(None)
    assert config.methods == ["sft", "ssr"]
    assert config.judge.kind == "all" and [j.kind for j in config.judge.judges] == ["refusal", "contains"]
    assert str(config.path) == "runs/quickstart"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 2\n")
    config = load_config(path, ["train.epochs=3", "data.n_train=10", "methods=[ssr]", "train.full=true"])
    assert config.train.epochs == 3 and config.data.n_train == 10
    assert config.methods == ["ssr"] and config.train.full is True


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 2\n")
    with pytest.raises(ConfigError, match=r"train\.epocs"):
        load_config(path)


def test_wrong_type_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"data\.n_train"):
        load_config(None, ["data.n_train=many"])


def test_combining_judge_needs_children():
    with pytest.raises(ConfigError, match="judges"):
        load_config(None, ["judge={kind: any}"])


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_every_judge_kind_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "methods: [sft, ssr, s3ft, sdft, self_only]\n"
        "judge:\n  kind: any\n  judges:\n"
        "    - {kind: exact}\n    - {kind: token_f1, threshold: 0.6}\n    - {kind: recall, threshold: 1.0}\n"
        "    - {kind: numeric, tolerance: 0.01}\n    - {kind: regex, pattern: 'answer: (.*)', ignore_case: false}\n"
        "    - {kind: llm, model: {name: some/model}, template: my.jinja, verdict_words: [CORRECT, INCORRECT]}\n")
    config = load_config(path)
    assert config.methods == ["sft", "ssr", "s3ft", "sdft", "self_only"]
    kinds = [j.kind for j in config.judge.judges]
    assert kinds == ["exact", "token_f1", "recall", "numeric", "regex", "llm"]
    assert config.judge.judges[5].verdict_words == ("CORRECT", "INCORRECT")


@pytest.mark.parametrize("judge,message", [
    ("{kind: regex}", r"judge\.pattern: Field required"),
    ("{kind: regex, pattern: '(unclosed'}", r"judge\.pattern: not a valid regular expression"),
    ("{kind: contains, pattern: x}", "`pattern` does not apply to a judge of kind `contains`"),
    ("{kind: exact, threshold: 0.3}", "`threshold` does not apply to a judge of kind `exact`"),
    ("{kind: refusal, skip_refusals: false}", "`skip_refusals` does not apply"),
    ("{kind: llm, verdict_words: ['Yes', 'yes']}", "two different"),
    ("{kind: llm, verdict_words: [Yes, No]}", r"judge\.verdict_words\.0"),  # YAML reads unquoted Yes as true
    ("{kind: token_f1, threshold: 1.5}", r"judge\.threshold"),
    ("{kind: llm, backend: local}", "`backend` does not apply"),  # renamed: `engine`, like generate.engine
    ("{kind: all, judges: [{kind: recall, tolerance: 1}]}", r"judge\.judges\.0\.tolerance: `tolerance` does not"),
    ("{kind: all, judges: []}", r"judge\.judges: List should have at least 1 item"),
    ("{kind: guess}", r"judge\.kind: unknown judge kind 'guess'; one of: all, any, contains"),
    ("{threshold: 0.5}", r"judge\.kind: unknown judge kind None"),
])
def test_bad_judge_settings_are_named(judge, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"judge={judge}"])


def test_unknown_method_is_rejected():
    with pytest.raises(ConfigError, match=r"methods\.1: unknown method 'dpo'"):
        load_config(None, ["methods=[ssr, dpo]"])


def test_a_restating_method_defined_after_the_config_module_brings_its_template_key(tmp_path, monkeypatch):
    """The config module is imported (above) before the method is defined: its name and its restatement's template
    setting are checked against the registry when a config is read, not fixed when the module was imported."""
    from ssrtune.methods import Method, Restatement
    from ssrtune.registry import METHODS

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS.items()))  # the method is gone after the test

    class Summarize(Method):
        name = "summarize"
        candidates = (Restatement("summaries", "summary", "paraphrase.jinja", "summary_template"),)

    template = tmp_path / "summary.jinja"
    template.write_text("Summarize {{ gold }}", encoding="utf-8")
    config = load_config(None, ["methods=[ssr, summarize]", f"generate.summary_template={template}"])
    assert config.methods == ["ssr", "summarize"]
    assert Summarize.candidates[0].template_text(config.generate) == "Summarize {{ gold }}"
    assert config.generate.template("paraphrase_template") is None
    dumped = config.generate.model_dump()
    assert list(dumped)[-3:] == ["paraphrase_template", "rewrite_template", "summary_template"]
    with pytest.raises(ConfigError, match=r"generate\.summary_templat: unknown key `summary_templat`; did you mean "
                                          r"`summary_template`\?$"):
        load_config(None, ["methods=[summarize]", "generate.summary_templat=x.jinja"])


@pytest.mark.parametrize("overrides,message", [
    (["data.n_train=10"], r"data\.n_train: `n_train` is a setting of a built-in recipe"),
    (["data.seed=3"], r"data\.seed: `seed` is a setting of a built-in recipe"),
    (["data.unanswerable_fraction=0.2"], r"data\.unanswerable_fraction: .* built-in recipe"),
])
def test_user_files_refuse_recipe_settings(tmp_path, overrides, message):
    files = ["data.recipe=null", f"data.train_file={tmp_path / 'a.jsonl'}", f"data.test_file={tmp_path / 'b.jsonl'}"]
    assert load_config(None, files).data.train_file.endswith("a.jsonl")
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*files, *overrides])


def test_a_recipe_refuses_file_settings_and_files_need_both(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.train_file: `train_file` is for your own files \(recipe: null\)"):
        load_config(None, [f"data.train_file={tmp_path / 'a.jsonl'}"])
    with pytest.raises(ConfigError, match=r"data\.test_file: Field required"):
        load_config(None, ["data.recipe=null", f"data.train_file={tmp_path / 'a.jsonl'}"])
    with pytest.raises(ConfigError, match=r"data\.recipe: unknown recipe 'squad'"):
        load_config(None, ["data.recipe=squad"])


def test_every_field_documents_itself():
    """Every setting a config can hold, in every module of the config package, has a description."""
    from pydantic import BaseModel

    import ssrtune.config as package

    modules = [importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    models = {m for module in modules for m in vars(module).values()
              if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__}
    missing = [f"{m.__name__}.{name}" for m in models
               for name, field in m.model_fields.items() if not field.description and name != "kind"]
    assert missing == []


def test_precision_is_the_models_and_the_old_per_stage_keys_name_it():
    config = load_config(None, ["model.dtype=bfloat16", "model.device_map=cuda:1", "model.attn_implementation=sdpa"])
    assert (config.model.dtype, config.model.device_map, config.model.attn_implementation) == ("bfloat16", "cuda:1",
                                                                                               "sdpa")
    for key in ("generate.bf16", "evaluate.bf16", "train.bf16"):
        with pytest.raises(ConfigError, match=rf"{key.split('.')[0]}: `bf16` was replaced by model.dtype"):
            load_config(None, [f"{key}=false"])
    with pytest.raises(ConfigError, match=r"judge: `bf16` was replaced by the judge model's own dtype: judge.model.dtype"):
        load_config(None, ["judge={kind: llm, bf16: false}"])
    with pytest.raises(ConfigError, match=r"generate: `tensor_parallel_size` was replaced by vllm.tensor_parallel_size"):
        load_config(None, ["generate.tensor_parallel_size=2"])
    with pytest.raises(ConfigError, match=r"model.device_map: String should match pattern"):
        load_config(None, ["model.device_map=gpu0"])


def test_judge_file(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text("kind: llm\nthreshold: 0.7\n")
    assert load_judge_config(path).threshold == 0.7
    path.write_text("kind: llm\nthreshhold: 0.7\n")
    with pytest.raises(ConfigError, match=f"{path}.*\n.*threshhold"):
        load_judge_config(path)


def test_the_resolved_config_written_to_disk_loads_again(tmp_path):
    from ssrtune.config.run import dump_config

    config = load_config(None, ["methods=[sft, ssr, s3ft]", "judge={kind: all, judges: [{kind: refusal}, "
                                "{kind: token_f1, threshold: 0.7}]}"])
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_every_shipped_config_loads_and_tuning_never_sees_the_test_split():
    folder = ROOT / "configs"
    configs = {path.name: load_config(path) for path in folder.glob("*.yaml")}
    assert {"quickstart.yaml", "reproduce.yaml", "tuning.yaml"} <= configs.keys()
    assert configs["tuning.yaml"].data.holdout == "dev" and configs["quickstart.yaml"].data.holdout == "test"


@pytest.mark.parametrize("yaml_text,message", [
    ("train:\n  epoch: 2\n", r"  train\.epoch: unknown key `epoch`; did you mean `epochs`\?"),
    ("judeg:\n  kind: contains\n", r"  judeg: unknown key `judeg`; did you mean `judge`\?"),
    ("models:\n  - {name: a, method: sft, train: {sed: 1}}\n",
     r"models\.0\.train: `sed` is not a train setting; did you mean `seed`\?"),
    ("data: {recipe: null, train_file: a.jsonl, test_file: a.jsonl, on_eror: skip}\n",
     r"data\.on_eror: unknown key `on_eror`; did you mean `on_error`\?"),
    ("judge: {kind: token_f1, treshold: 0.3}\n", r"judge\.treshold: unknown key `treshold`; did you mean `threshold`"),
    ("data: {recipe: null, train_file: a.jsonl, test_file: a.jsonl, fields: {qeury: question}}\n",
     r"data\.fields: 'qeury' is not a record field; did you mean `query`\?"),
    ("evaluate: {retention: {benchmark: [piqa]}}\n", r"evaluate\.retention\.benchmark: .*did you mean `benchmarks`"),
    ("zzz: 1\n", r"  zzz: unknown key `zzz`$"),
    ("generate: {max_new_token: 3}\n", r"\n  generate\.max_new_token: unknown key `max_new_token`; did you mean "
                                       r"`max_new_tokens`\?$"),
])
def test_a_mistyped_key_names_the_key_it_resembles(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
