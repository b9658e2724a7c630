"""The restating methods end to end on the tiny model: paraphrases / rewrites are resumable, cached artifacts."""

import json

from ssrtune import pipeline
from ssrtune.config import load_config
from ssrtune.store import iter_jsonl, read_json


def tiny_config(tmp_path, tiny_model, records_file, *overrides):
    return load_config(None, [
        f"run_dir={tmp_path / 'run'}", f"model.name={tiny_model}", "data.recipe=null",
        f"data.train_file={records_file}", f"data.test_file={records_file}", "generate.batch_size=4",
        "generate.max_new_tokens=5", "generate.bf16=false", *overrides,
    ])


def test_s3ft_sdft_self_only_select(tiny_model, records_file, tmp_path):
    config = tiny_config(tmp_path, tiny_model, records_file, "judge={kind: token_f1, threshold: 0.0}")
    records, _ = pipeline.prepare_data(config)
    generations = pipeline.generate_stage(config, records)
    judgments = pipeline.judge_stage(config, records, generations)
    assert {j["verdict"] for j in judgments.values()} == {"accept"}  # threshold 0 accepts every own answer
    rows = pipeline.select_stage(config, "s3ft", records, generations, judgments)
    assert {r["source"] for r in rows} == {"self"}
    paraphrases = config.path / "paraphrases.jsonl"
    assert not paraphrases.exists() or not paraphrases.read_text()  # no own answer rejected: nothing to paraphrase

    config = tiny_config(tmp_path, tiny_model, records_file, "judge={kind: exact}")
    judgments = pipeline.judge_stage(config, records, generations, fresh=True)
    rows = {m: pipeline.select_stage(config, m, records, generations, judgments, fresh=True)
            for m in ("s3ft", "sdft", "self_only")}
    paraphrases = list(iter_jsonl(config.path / "paraphrases.jsonl"))
    rejected = {i for i, j in judgments.items() if j["verdict"] != "accept"}
    assert {p["id"] for p in paraphrases} == rejected  # s3ft paraphrases only where the own answer failed
    assert len(list(iter_jsonl(config.path / "rewrites.jsonl"))) == len(records)  # sdft rewrites every answer
    for method, method_rows in rows.items():
        assert len(method_rows) == len(records)
        stored = [json.loads(line) for line in (config.path / "train" / f"{method}.jsonl").read_text().splitlines()]
        assert [r["source"] for r in stored] == [r["source"] for r in method_rows]
        stats = read_json(config.path / "train" / f"{method}.stats.json")
        assert abs(sum(stats["shares"].values()) - 1) < 1e-9
    assert {r["source"] for r in rows["self_only"]} <= {"self", "dropped"}
    assert all(r["target"] is None for r in rows["self_only"] if r["source"] == "dropped")
    assert read_json(config.path / "train" / "sdft.stats.json")["judge_restated"]["accept"] == sum(
        r["source"] == "paraphrase" for r in rows["sdft"])

    # a rerun reuses the restatements and their verdicts; a changed template regenerates them
    before = (config.path / "rewrites.jsonl").stat().st_mtime_ns
    pipeline.select_stage(config, "sdft", records, generations, judgments)
    assert (config.path / "rewrites.jsonl").stat().st_mtime_ns == before
    template = tmp_path / "rewrite.jinja"
    template.write_text("Say again: {{ gold }}")
    changed = tiny_config(tmp_path, tiny_model, records_file, "judge={kind: exact}",
                          f"generate.rewrite_template={template}")
    try:
        pipeline.select_stage(changed, "sdft", records, generations, judgments)
        raise AssertionError("a changed template must not reuse old rewrites")
    except pipeline.StaleArtifactError:
        pass
