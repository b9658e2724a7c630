"""Judge audit: how a judge's verdicts agree with labels, or with another judge, on the run's own answers.

"Positive" is accept: precision is the share of the audited judge's accepts that the reference accepts too,
recall the share of the reference's accepts that the audited judge finds. The counts are a few lines of
arithmetic over three verdicts, not worth a scikit-learn dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ssrtune.data.schema import DataError, Record
from ssrtune.judges.base import VERDICTS
from ssrtune.config.judges import JudgeConfig, describe
from ssrtune.report.tables import Table
from ssrtune.evaluation.stats import ratio
from ssrtune.storage.artifacts import BadLine, jsonl_rows, write_json, write_text_atomic

if TYPE_CHECKING:
    from ssrtune.stages.base import Run

_LABELS = {"accept": "accept", "reject": "reject", True: "accept", False: "reject", 1: "accept", 0: "reject"}


def load_labels(path: Path) -> dict[str, dict]:
    """Hand labels: JSONL rows {id, label} with label accept / reject (or true / false), an optional rationale."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "no such file")
    labels: dict[str, dict] = {}
    for line, row in jsonl_rows(path):
        if isinstance(row, BadLine):
            raise DataError(path, line, None, str(row))
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
    precision, recall = ratio(both_accept, audited_accept), ratio(both_accept, reference_accept)
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


def run_audit(run: Run, judge: JudgeConfig, reference: JudgeConfig | Path, name: str) -> tuple[Path, Path, dict]:
    """Judge the run's own answers with `judge` and compare with `reference` (another judge or a label file).

    A judge other than the run's own caches its verdicts in audit/judgments/<judge fingerprint>.jsonl; `--fresh`
    (the run's `judge` stage fresh) judges again. `name` names the report files audit/<name>.json and .md.
    """
    from ssrtune.config.run import plain_name
    from ssrtune.stages.data import Data
    from ssrtune.stages.generate import Generate
    from ssrtune.stages.judge import Judge

    plain_name(name, "judge audit name")  # before any work: audit/<name> must stay inside the run directory
    records, _ = run(Data())
    generations = run(Generate())

    def verdicts(j: JudgeConfig) -> dict[str, dict]:
        return run(Judge() if j == run.config.judge else Judge(Generate(), j))

    audited = verdicts(judge)
    if isinstance(reference, Path):
        expected, reference_name = load_labels(reference), f"labels {reference}"
        unknown = sorted(set(expected) - set(generations))
        if unknown:
            raise DataError(reference, None, "id", f"{len(unknown)} ids are not in the run, e.g. {unknown[0]!r}")
    else:
        expected, reference_name = verdicts(reference), describe(reference)
    result = compare(audited, expected, records, generations)
    json_path, md_path = write_audit(run.layout.audit, name, describe(judge), reference_name, result)
    return json_path, md_path, result
