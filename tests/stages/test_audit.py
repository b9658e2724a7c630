"""Judge audit: the agreement arithmetic, the label file, and `ssrtune judge-audit` on the tiny model."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from ssrtune.judges.audit import compare, load_labels
from ssrtune.cli import app
from ssrtune.data.schema import DataError, Record
from tests.tiny_run import TinyRun, record_dicts


def ssrtune(*args):
    # in process: a subprocess would spend most of this test importing torch
    return CliRunner().invoke(app, [str(a) for a in args])


def test_agreement_precision_recall_kappa_by_hand():
    records = [Record.model_validate(r) for r in record_dicts()]  # q1..q6
    candidates = {r.id: {"response": f"answer {r.id}"} for r in records}
    reference = dict(zip(["q1", "q2", "q3", "q4", "q5", "q6"], ["accept", "accept", "accept", "reject", "reject",
                                                                  "reject"]))
    audited = dict(zip(["q1", "q2", "q3", "q4", "q5", "q6"], ["accept", "accept", "reject", "accept", "reject",
                                                                "failed"]))
    result = compare({i: {"verdict": v} for i, v in audited.items()}, {i: {"verdict": v} for i, v in reference.items()},
                     records, candidates)
    assert result["n"] == 6 and result["agreement"] == pytest.approx(3 / 6)
    assert result["accept_precision"] == pytest.approx(2 / 3) and result["accept_recall"] == pytest.approx(2 / 3)
    assert result["confusion"]["accept"] == {"accept": 2, "reject": 1, "failed": 0}
    assert result["confusion"]["reject"] == {"accept": 1, "reject": 1, "failed": 1}
    # chance agreement: reference (3 accept, 3 reject) x audited (3 accept, 2 reject, 1 failed)
    chance = (3 * 3 + 3 * 2) / 36
    assert result["kappa"] == pytest.approx((0.5 - chance) / (1 - chance))
    assert [d["id"] for d in result["disagreements"]] == ["q3", "q4", "q6"]
    assert result["disagreements"][0]["candidate"] == "answer q3" and result["disagreements"][0]["gold"] == "Three"


def test_label_file_errors_name_the_line_and_field(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "q1", "label": "Accept"}\n{"id": 2, "label": false}\n\n{"id": "q3", "label": true}\n')
    assert load_labels(path) == {"q1": {"verdict": "accept", "rationale": "label"},
                                 "2": {"verdict": "reject", "rationale": "label"},
                                 "q3": {"verdict": "accept", "rationale": "label"}}
    path.write_text('{"id": "q1", "label": "accept"}\n{"id": "q2", "label": "maybe"}\n')
    with pytest.raises(DataError, match="line 2, field 'label'"):
        load_labels(path)
    path.write_text('{"id": "q1", "label": "accept"}\n{"label": "accept"}\n')
    with pytest.raises(DataError, match="line 2, field 'id'"):
        load_labels(path)
    path.write_text('{"id": "q1", "label": "accept"\n')
    with pytest.raises(DataError, match="line 1: invalid JSON"):
        load_labels(path)


def test_judge_audit_command_against_labels_and_another_judge(tiny_run, tiny_model, tmp_path):
    run = tiny_run.path
    config = tiny_run.file(generate={"batch_size": 6, "max_new_tokens": 4})
    llm = tmp_path / "llm.yaml"
    llm.write_text(yaml.safe_dump({"kind": "llm", "model": {"name": str(tiny_model), "dtype": "float32"}}))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": f"q{i}", "label": i % 2 == 0}) + "\n" for i in range(1, 7)))

    result = ssrtune("judge-audit", config, "--judge", llm, "--labels", labels)
    assert result.exit_code == 0, result.output
    assert "| agreement |" in result.stdout and "Confusion matrix" in result.stdout
    audit = json.loads((run / "audit" / "llm-vs-labels.json").read_text())
    assert audit["n"] == 6 and sum(map(sum, (row.values() for row in audit["confusion"].values()))) == 6
    assert audit["reference"] == f"labels {labels}" and audit["audited"].startswith("llm(transformers")
    assert (run / "audit" / "llm-vs-labels.md").exists()
    cached = list((run / "audit" / "judgments").glob("*.jsonl"))
    assert len(cached) == 1 and len(cached[0].read_text().splitlines()) == 6

    # the LLM judge against the run's own (rule) judge, reusing the cached LLM verdicts
    before = cached[0].stat().st_mtime_ns
    result = ssrtune("judge-audit", config, "--judge", llm, "--name", "llm-vs-rules")
    assert result.exit_code == 0, result.output
    audit = json.loads((run / "audit" / "llm-vs-rules.json").read_text())
    assert audit["reference"] == "all(refusal, contains)" and (run / "judgments.jsonl").exists()
    assert cached[0].stat().st_mtime_ns == before

    bad = ssrtune("judge-audit", config)
    assert bad.exit_code != 0 and "compared with itself" in bad.output


def test_judge_audit_name_cannot_leave_the_run_directory(tiny_model, records_file, tmp_path):
    from ssrtune.config.run import ConfigError

    (tmp_path / "a").mkdir()
    tiny = TinyRun(tmp_path / "a", tiny_model, records_file)
    run, config = tiny.path, tiny.file(generate={"batch_size": 6, "max_new_tokens": 4})
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": f"q{i}", "label": True}) + "\n" for i in range(1, 7)))
    result = ssrtune("judge-audit", config, "--labels", labels, "--name", "../../outside")
    assert isinstance(result.exception, ConfigError) and "judge audit name '../../outside'" in str(result.exception)
    # ../../outside from run/audit/ would be tmp_path/a/outside.json: nothing is written anywhere below tmp_path
    assert not list(tmp_path.rglob("outside*")) and not (run / "generations.jsonl").exists()
