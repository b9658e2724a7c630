"""The six test records as training rows (prompt messages and target), and a training run on them with the trainer
alone (no run directory, no stages)."""

from ssrtune.config.run import ModelConfig, TrainConfig
from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.training.trainer import train
from tests.tiny_run import record_dicts


def rows():
    return [{"id": r["id"], "messages": prompt_messages(Record.model_validate(r)), "target": r["response"]}
            for r in record_dicts()]


def fit(tiny_model, tmp_path, run_name=None, **overrides):
    config = TrainConfig(**{"epochs": 3, "batch_size": 3, "learning_rate": 3e-3,
                            "warmup_ratio": 0.0, **overrides})
    model_config = ModelConfig(name=str(tiny_model))
    out = tmp_path / "model"
    return train(load_model(model_config), load_tokenizer(model_config), rows(), config, out, run_name), out
