from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.inference.generation import generate, generate_batch
from ssrtune.schema import ModelConfig
from ssrtune.models import load_model, load_tokenizer
from ssrtune.store import RecordFile, iter_jsonl
from tests.conftest import record_dicts


def prompts():
    return {r["id"]: prompt_messages(Record.model_validate(r)) for r in record_dicts()}


def test_batched_left_padded_generation_equals_one_by_one(tiny_model):
    config = ModelConfig(name=str(tiny_model))
    model, tokenizer = load_model(config), load_tokenizer(config)
    chats = list(prompts().values())
    batched, n_tokens = generate_batch(model, tokenizer, chats, max_new_tokens=8, bf16=False)
    single = [generate_batch(model, tokenizer, [c], max_new_tokens=8, bf16=False)[0][0] for c in chats]
    assert batched == single
    assert 0 < n_tokens <= 8 * len(chats)


def test_generation_resumes_without_duplicates(tiny_model, tmp_path):
    config = ModelConfig(name=str(tiny_model))
    model, tokenizer = load_model(config), load_tokenizer(config)
    all_prompts = prompts()
    first = dict(list(all_prompts.items())[:2])
    generate(model, tokenizer, first, RecordFile(tmp_path / "g.jsonl", "fp"), batch_size=4, max_new_tokens=6,
             bf16=False)
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    records = generate(model, tokenizer, all_prompts, out, batch_size=4, max_new_tokens=6, bf16=False)
    assert sorted(records) == sorted(all_prompts)
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert len(lines) == len(all_prompts)
    fresh = generate(model, tokenizer, all_prompts, RecordFile(tmp_path / "h.jsonl", "fp"), batch_size=3,
                     max_new_tokens=6, bf16=False)
    assert {k: v["response"] for k, v in fresh.items()} == {k: v["response"] for k, v in records.items()}


def test_batches_hold_prompts_of_similar_length_longest_first(tiny_model, tmp_path):
    config = ModelConfig(name=str(tiny_model))
    model, tokenizer = load_model(config), load_tokenizer(config)
    all_prompts = prompts()
    generate(model, tokenizer, all_prompts, RecordFile(tmp_path / "g.jsonl", "fp"), batch_size=2, max_new_tokens=2,
             bf16=False)
    written = [row["id"] for row in iter_jsonl(tmp_path / "g.jsonl")]
    lengths = [len(tokenizer.apply_chat_template(all_prompts[i], add_generation_prompt=True, return_dict=False))
               for i in written]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 1
