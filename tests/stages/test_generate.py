from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.inference.generation import generate_into
from ssrtune.inference.local import TransformersLM
from ssrtune.config.fields import ModelConfig
from ssrtune.storage.artifacts import RecordFile, iter_jsonl
from tests.tiny_run import record_dicts


def prompts():
    return {r["id"]: prompt_messages(Record.model_validate(r)) for r in record_dicts()}


def tiny_lm(tiny_model, batch_size=16) -> TransformersLM:
    return TransformersLM(ModelConfig(name=str(tiny_model), dtype="float32"), batch_size=batch_size)


def test_batched_left_padded_generation_equals_one_by_one(tiny_model):
    lm = tiny_lm(tiny_model)
    chats = list(prompts().values())
    batched = lm.generate(chats, max_new_tokens=8)
    single = [lm.generate([c], max_new_tokens=8)[0] for c in chats]
    assert batched == single
    assert 0 < lm.tokens_generated <= 8 * len(chats) * 2
    # raw text is continued as it is, and cut before a stop string
    text = lm.tokenizer.apply_chat_template(chats[0], tokenize=False, add_generation_prompt=True)
    assert lm.generate([text], max_new_tokens=8) == [batched[0]] and len(batched[0]) >= 4
    cut = lm.generate([text], max_new_tokens=8, stop=[batched[0][2:4]])
    assert batched[0].startswith(cut[0]) and len(cut[0]) <= 2


def test_generation_resumes_without_duplicates(tiny_model, tmp_path):
    all_prompts = prompts()
    first = dict(list(all_prompts.items())[:2])
    lm = tiny_lm(tiny_model, batch_size=4)
    generate_into(lm, first, RecordFile(tmp_path / "g.jsonl", "fp"), max_new_tokens=6, description="g")
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    assert generate_into(lm, all_prompts, out, max_new_tokens=6, description="g") == {}
    records = out.records
    assert sorted(records) == sorted(all_prompts)
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert len(lines) == len(all_prompts)
    fresh = RecordFile(tmp_path / "h.jsonl", "fp")
    generate_into(tiny_lm(tiny_model, batch_size=3), all_prompts, fresh, max_new_tokens=6, description="h")
    assert {k: v["response"] for k, v in fresh.records.items()} == {k: v["response"] for k, v in records.items()}


def test_batches_hold_prompts_of_similar_length_longest_first(tiny_model, tmp_path):
    lm = tiny_lm(tiny_model, batch_size=2)
    all_prompts = prompts()
    generate_into(lm, all_prompts, RecordFile(tmp_path / "g.jsonl", "fp"), max_new_tokens=2, description="g")
    written = [row["id"] for row in iter_jsonl(tmp_path / "g.jsonl")]
    lengths = [len(lm.tokenizer.apply_chat_template(all_prompts[i], add_generation_prompt=True, return_dict=False))
               for i in written]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 1
