"""Judge audit: how a judge's verdicts agree with labels, or with another judge, on the run's own answers.

"Positive" is accept: precision is the share of the audited judge's accepts that the reference accepts too,
recall the share of the reference's accepts that the audited judge finds. The counts are a few lines of
arithmetic over three verdicts, not worth a scikit-learn dependency.
"""

from __future__ import annotations

import json
from pathlib import Path

from ssrtune.config import JudgeConfig, RunConfig
from ssrtune.data import DataError, Record
from ssrtune.judge import Verdict
from ssrtune.report.tables import Table
from ssrtune.store import write_json, write_text_atomic

VERDICTS: tuple[Verdict, ...] = ("accept", "reject", "failed")
_LABELS = {"accept": "accept", "reject": "reject", True: "accept", False: "reject", 1: "accept", 0: "reject"}


def load_labels(path: Path) -> dict[str, dict]:
    """Hand labels: JSONL rows {id, label} with label accept / reject (or true / false), an optional rationale."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "no such file")
    labels: dict[str, dict] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(path, line, None, f"invalid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
            raise DataError(path, line, "id", "each row needs an `id`")
        label = row.get("label")
        label = label.strip().lower() if isinstance(label, str) else label
        if isinstance(label, float) or label not in _LABELS:
            raise DataError(path, line, "label", f"{row.get('label')!r} is not accept / reject / true / false")
        labels[str(row["id"])] = {"verdict": _LABELS[label], "rationale": row.get("rationale", "label")}
    if not labels:
        raise DataError(path, None, None, "holds no labels")
    return labels


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def compare(audited: dict[str, dict], reference: dict[str, dict], records: list[Record],
            candidates: dict[str, dict]) -> dict:
    """Agreement, Cohen's kappa, precision / recall / F1 of accept, the confusion matrix, and the disagreements."""
    ids = [r.id for r in records if r.id in audited and r.id in reference]
    if not ids:
        raise ValueError("the audited judge and the reference share no example")
    confusion = {ref: {aud: 0 for aud in VERDICTS} for ref in VERDICTS}
    for i in ids:
        confusion[reference[i]["verdict"]][audited[i]["verdict"]] += 1
    n = len(ids)
    agree = sum(confusion[v][v] for v in VERDICTS)
    both_accept = confusion["accept"]["accept"]
    audited_accept = sum(confusion[ref]["accept"] for ref in VERDICTS)
    reference_accept = sum(confusion["accept"].values())
    precision, recall = _ratio(both_accept, audited_accept), _ratio(both_accept, reference_accept)
    # Cohen's kappa: agreement beyond what the two verdict frequencies would give by chance.
    chance = sum(sum(confusion[v].values()) * sum(confusion[r][v] for r in VERDICTS) for v in VERDICTS) / n ** 2
    by_id = {r.id: r for r in records}
    disagreements = [
        {"id": i, "query": by_id[i].query, "gold": by_id[i].response, "candidate": candidates[i]["response"],
         "reference": reference[i]["verdict"], "reference_rationale": reference[i].get("rationale"),
         "audited": audited[i]["verdict"], "audited_rationale": audited[i].get("rationale")}
        for i in ids if audited[i]["verdict"] != reference[i]["verdict"]
    ]
    return {
        "n": n, "agreement": agree / n, "kappa": None if chance == 1 else (agree / n - chance) / (1 - chance),
        "accept_precision": precision, "accept_recall": recall,
        "accept_f1": None if not precision or not recall else 2 * precision * recall / (precision + recall),
        "audited_accept_rate": audited_accept / n, "reference_accept_rate": reference_accept / n,
        "confusion": confusion, "disagreements": disagreements,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


METRICS = [("agreement", "agreement"), ("kappa", "Cohen's kappa"), ("accept_precision", "accept precision"),
           ("accept_recall", "accept recall"), ("accept_f1", "accept F1"),
           ("audited_accept_rate", "audited accept rate"), ("reference_accept_rate", "reference accept rate")]


def markdown(name: str, audited: str, reference: str, result: dict, shown: int = 20) -> str:
    metrics = Table([label for _, label in METRICS], [[_fmt(result[key]) for key, _ in METRICS]])
    confusion = Table(["reference \\ audited", *VERDICTS],
                      [[ref, *(str(result["confusion"][ref][aud]) for aud in VERDICTS)] for ref in VERDICTS])
    lines = [f"# Judge audit: {name}", "", f"Audited judge: {audited}  ", f"Reference: {reference}  ",
             f"Examples: {result['n']}", "", metrics.markdown(),
             "Confusion matrix (rows: reference, columns: audited judge):", "", confusion.markdown(),
             f"Disagreements: {len(result['disagreements'])} (the first {shown} below; all in the .json file)", ""]
    for d in result["disagreements"][:shown]:
        lines.append(f"- `{d['id']}` reference **{d['reference']}**, audited **{d['audited']}** "
                     f"({d['audited_rationale']}); gold: {d['gold']!r}; candidate: {d['candidate'][:160]!r}")
    return "\n".join(lines) + "\n"


def write_audit(folder: Path, name: str, audited: str, reference: str, result: dict) -> tuple[Path, Path]:
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    write_json(json_path, {"name": name, "audited": audited, "reference": reference, **result})
    write_text_atomic(md_path, markdown(name, audited, reference, result))
    return json_path, md_path


def describe(judge: JudgeConfig) -> str:
    """A one-line summary of a judge for the audit report."""
    if judge.kind in ("all", "any"):
        return f"{judge.kind}(" + ", ".join(describe(child) for child in judge.judges) + ")"
    if judge.kind == "llm":
        return f"llm({judge.backend}: {judge.model.name}, threshold {judge.threshold})"
    return judge.kind


def run_audit(config: RunConfig, judge: JudgeConfig, reference: JudgeConfig | Path, name: str,
              fresh: bool = False) -> tuple[Path, Path, dict]:
    """Judge the run's own answers with `judge` and compare with `reference` (another judge or a label file).

    A judge other than the run's own caches its verdicts in audit/judgments/<judge fingerprint>.jsonl.
    """
    from ssrtune import pipeline
    from ssrtune.judge import judge_fingerprint

    records, _ = pipeline.prepare_data(config)
    generations = pipeline.generate_stage(config, records)

    def verdicts(j: JudgeConfig) -> dict[str, dict]:
        if j == config.judge:
            return pipeline.judge_stage(config, records, generations, fresh)
        out = config.path / "audit" / "judgments" / f"{judge_fingerprint(j)}.jsonl"
        return pipeline.judge_candidates(config, j, records, config.path / "generations.jsonl", out, fresh)

    audited = verdicts(judge)
    if isinstance(reference, Path):
        expected, reference_name = load_labels(reference), f"labels {reference}"
        unknown = sorted(set(expected) - set(generations))
        if unknown:
            raise DataError(reference, None, "id", f"{len(unknown)} ids are not in the run, e.g. {unknown[0]!r}")
    else:
        expected, reference_name = verdicts(reference), describe(reference)
    result = compare(audited, expected, records, generations)
    json_path, md_path = write_audit(config.path / "audit", name, describe(judge), reference_name, result)
    return json_path, md_path, result
