"""Fine-tuning methods: what target each training example gets.

A method is one registered class: whether it tries the model's own answer, an optional restatement of the gold
answer by the base model (its template, its artifact, its config key), and whether examples without an accepted
candidate fall back to the gold answer or are dropped. Every method's targets come from one rule, `Method.select`:
the first accepted candidate, else the fallback. Defining a subclass registers it in `registry.METHODS`, which the
configuration's method names are checked against.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.prompt_templates import template_text
from ssrtune.registry import METHODS


@dataclass(frozen=True)
class Restatement:
    """The base model restating gold answers, greedily, from a prompt template; judged like own answers."""

    name: str  # names its artifacts: <name>.jsonl holds the restatements, <name>.judgments.jsonl their verdicts
    template: str  # the shipped template, in ssrtune/templates/
    config_key: str  # generate.<config_key>: a template file of the user's replacing the shipped one
    source: str  # the `source` label of the targets it gives
    only_rejected: bool  # restate only where the own answer was not accepted, or every example

    def template_text(self, generate) -> str:
        """The template: the user's file named by `generate.<config_key>` (config.run.GenerateConfig), or the shipped
        one."""
        return template_text(generate.template(self.config_key), self.template)

    def wanted(self, records: list[Record], judgments: dict[str, dict]) -> list[Record]:
        """The records to restate."""
        return [r for r in records
                if not self.only_rejected or judgments.get(r.id, {}).get("verdict") != "accept"]


class Method:
    """A fine-tuning method; subclasses set the class attributes below and are registered by their `name`."""

    name: ClassVar[str]
    own_answers: ClassVar[bool] = False  # the model's own answer is the first candidate
    restatement: ClassVar[Restatement | None] = None  # the next candidate: a restated gold answer
    drops_rejected: ClassVar[bool] = False  # without an accepted candidate: dropped (True) or gold (False)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        METHODS.add(cls.name, cls())

    def select(self, records: list[Record], generations: dict[str, dict], judgments: dict[str, dict],
               restated: dict[str, dict] | None = None,
               restated_judgments: dict[str, dict] | None = None) -> list[dict]:
        """Rows {id, messages, target, source}: the first accepted candidate, else gold (source `gold`) or no
        target (source `dropped`). A failed judgment counts as not accepted, and so does a verdict on an answer
        that is missing (its generation request failed)."""
        tries = [(generations, judgments, "self")] if self.own_answers else []
        if self.restatement is not None:
            tries.append((restated or {}, restated_judgments or {}, self.restatement.source))
        rows = []
        for record in records:
            target, source = (None, "dropped") if self.drops_rejected else (record.response, "gold")
            for answers, verdicts, label in tries:
                if record.id in answers and verdicts.get(record.id, {}).get("verdict") == "accept":
                    target, source = answers[record.id]["response"], label
                    break
            rows.append({"id": record.id, "messages": prompt_messages(record), "target": target, "source": source})
        return rows


# s3ft's paraphrases of the gold answer and sdft's rewrites of it (generate.paraphrase_template and
# generate.rewrite_template: the user's template files; null = the shipped ones).
PARAPHRASE = Restatement("paraphrases", "paraphrase.jinja", "paraphrase_template", source="paraphrase",
                         only_rejected=True)
REWRITE = Restatement("rewrites", "rewrite.jinja", "rewrite_template", source="rewrite", only_rejected=False)


class SFT(Method):
    """Gold for every example."""

    name = "sft"


class SSR(Method):
    """Selective self-rehearsal (arXiv 2409.04787): the own answer where the judge accepts it, else gold."""

    name = "ssr"
    own_answers = True


class S3FT(Method):
    """arXiv 2502.08130: the own answer if accepted; else the base model's paraphrase of the gold if accepted;
    else gold."""

    name = "s3ft"
    own_answers = True
    restatement = PARAPHRASE


class SDFT(Method):
    """Self-distillation fine-tuning (arXiv 2402.13669): the base model's rewrite of the gold (guided by it) if
    accepted, else gold."""

    name = "sdft"
    restatement = REWRITE


class SelfOnly(Method):
    """Rejection sampling: the own answer if accepted; the other examples are dropped."""

    name = "self_only"
    own_answers = True
    drops_rejected = True


def trained_rows(rows: list[dict]) -> list[dict]:
    """The rows a model trains on: all but the dropped ones (which have no target)."""
    return [row for row in rows if row["target"] is not None]


def source_shares(rows: list[dict]) -> dict[str, float]:
    counts = Counter(r["source"] for r in rows)
    return {source: counts[source] / len(rows) for source in sorted(counts)}
