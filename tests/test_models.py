import pytest

from ssrtune.schema import ModelConfig
from ssrtune.models import embedded_gguf, load_model, load_tokenizer, resolve


def test_local_folder_loads_with_chat_template(tiny_model):
    config = ModelConfig(name=str(tiny_model))
    tokenizer = load_tokenizer(config)
    model = load_model(config)
    assert tokenizer.pad_token == "<|im_end|>" and not model.training
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_hub_ids_pass_through_and_missing_gguf_is_clear(tmp_path):
    assert resolve("org/some-model") == "org/some-model"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "nope.gguf"))


def test_embedded_model_is_found_in_its_package():
    with open(embedded_gguf("smollm2-135m-instruct"), "rb") as handle:
        assert handle.read(4) == b"GGUF"  # the file the package ships, not just its name
