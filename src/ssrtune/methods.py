"""Fine-tuning methods: what target each training example gets.

A method lists its candidate sources, in order, and its fallback: each example trains on the first candidate the
judge accepts, else on the gold answer (or is dropped). A source is where candidates come from (the base model's
own greedy answers; its restatements of the gold answers); a stage of the run makes each source's answers and the
judge stage judges them (`stages.candidates`). Every method's targets come from one rule, `Method.select`.
Defining a subclass registers it in `registry.METHODS`, which the configuration's method names are checked
against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.prompt_templates import template_text
from ssrtune.registry import METHODS
from ssrtune.storage import layout


@dataclass(frozen=True)
class Source:
    """Where candidate targets come from."""

    name: str  # names its artifacts: <name>.jsonl holds the candidates, and the judge's verdicts are beside it
    label: str  # the `source` label of the targets it gives


@dataclass(frozen=True)
class OwnAnswers(Source):
    """The base model's greedy answer to every training prompt."""


OWN_ANSWERS = OwnAnswers(layout.OWN_ANSWERS, "self")


@dataclass(frozen=True)
class Restatement(Source):
    """The base model restating gold answers, greedily, from a prompt template; judged like own answers."""

    template: str = ""  # the shipped template, in ssrtune/templates/
    config_key: str = ""  # generate.<config_key>: a template file of the user's replacing the shipped one
    after: Source | None = None  # restate only the examples whose candidate from `after` was not accepted

    def template_text(self, generate) -> str:
        """The template: the user's file named by `generate.<config_key>` (config.run.GenerateConfig), or the shipped
        one."""
        return template_text(generate.template(self.config_key), self.template)

    def wanted(self, records: list[Record], earlier: tuple[dict[str, dict], dict[str, dict]]) -> list[Record]:
        """The records to restate (`earlier`: the answers of `after` and the judge's verdicts on them)."""
        accepted = accepted_answers(*earlier) if self.after is not None else {}
        return [r for r in records if r.id not in accepted]


Candidates = Mapping[Source, tuple[dict[str, dict], dict[str, dict]]]  # a source's answers and its verdicts, by id


class Method:
    """A fine-tuning method; subclasses set the class attributes below and are registered by their `name`."""

    name: ClassVar[str]
    candidates: ClassVar[tuple[Source, ...]] = ()  # tried in order; the first accepted one is the target
    fallback: ClassVar[Literal["gold", "drop"]] = "gold"  # an example without an accepted candidate
    accepted: ClassVar[Literal["target", "drop"]] = "target"  # an example with one: trained on it, or left out

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        METHODS.add(cls.name, cls())

    def select(self, records: list[Record], candidates: Candidates | None = None) -> list[dict]:
        """Rows {id, messages, target, source}: the first accepted candidate, else gold (source `gold`) or no
        target (source `dropped`). A candidate answers the example its record names (`example`, by default its
        own id: one answer per example). A failed judgment counts as not accepted, and so does a verdict on an
        answer that is missing (its generation request failed)."""
        accepted = [accepted_answers(*(candidates or {}).get(source, ({}, {}))) for source in self.candidates]
        rows = []
        for record in records:
            target, label = (record.response, "gold") if self.fallback == "gold" else (None, "dropped")
            for source, first in zip(self.candidates, accepted):
                if record.id in first:
                    target, label = ((first[record.id]["response"], source.label) if self.accepted == "target"
                                     else (None, "dropped"))
                    break
            rows.append({"id": record.id, "messages": prompt_messages(record), "target": target, "source": label})
        return rows


# s3ft's paraphrases of the gold answer and sdft's rewrites of it (generate.paraphrase_template and
# generate.rewrite_template: the user's template files; null = the shipped ones).
PARAPHRASE = Restatement("paraphrases", "paraphrase", "paraphrase.jinja", "paraphrase_template", after=OWN_ANSWERS)
REWRITE = Restatement("rewrites", "rewrite", "rewrite.jinja", "rewrite_template")


class SFT(Method):
    """Gold for every example."""

    name = "sft"


class SSR(Method):
    """Selective self-rehearsal (arXiv 2409.04787): the own answer where the judge accepts it, else gold."""

    name = "ssr"
    candidates = (OWN_ANSWERS,)


class S3FT(Method):
    """arXiv 2502.08130: the own answer if accepted; else the base model's paraphrase of the gold if accepted;
    else gold."""

    name = "s3ft"
    candidates = (OWN_ANSWERS, PARAPHRASE)


class SDFT(Method):
    """Self-distillation fine-tuning (arXiv 2402.13669): the base model's rewrite of the gold (guided by it) if
    accepted, else gold."""

    name = "sdft"
    candidates = (REWRITE,)


class SelfOnly(Method):
    """Rejection sampling: the own answer if accepted; the other examples are dropped."""

    name = "self_only"
    candidates = (OWN_ANSWERS,)
    fallback = "drop"


class SFTRejected(Method):
    """The dose-matched control of ssr: sft on the examples whose own answer the judge rejected, the accepted ones
    dropped. It trains on exactly ssr's gold targets without ssr's own ones, so a smaller drift of ssr than of this
    control is not explained by ssr simply learning fewer new targets."""

    name = "sft_rejected"
    candidates = (OWN_ANSWERS,)
    accepted = "drop"


def accepted_answers(answers: dict[str, dict], verdicts: dict[str, dict]) -> dict[str, dict]:
    """Example id -> the first of its answers the judge accepted. An answer answers the example its record names
    (`example`, by default its own id)."""
    accepted: dict[str, dict] = {}
    for key, answer in answers.items():
        if verdicts.get(key, {}).get("verdict") == "accept":
            accepted.setdefault(answer.get("example", key), answer)
    return accepted


def trained_rows(rows: list[dict]) -> list[dict]:
    """The rows a model trains on: all but the dropped ones (which have no target)."""
    return [row for row in rows if row["target"] is not None]


def source_shares(rows: list[dict]) -> dict[str, float]:
    counts = Counter(r["source"] for r in rows)
    return {source: counts[source] / len(rows) for source in sorted(counts)}
