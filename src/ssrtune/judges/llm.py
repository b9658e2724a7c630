"""The `llm` judge: a language model compares the candidate with the gold answer, guided by a prompt template.

With the transformers engine the judge model runs here and the verdict comes from the log-probabilities of the
two verdict words right after the prompt, so there is no free text to parse and a batch is one forward pass. The
openai engine asks an OpenAI-compatible server and parses its reply strictly: anything but one verdict word is a
failed verdict.
"""

from __future__ import annotations

import math
import re

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.inference.scoring import loglikelihoods
from ssrtune.judges.base import Judge, JudgeInput, Judgment, Verdict
from ssrtune.judges.config import EndpointLLMJudgeConfig, LocalLLMJudgeConfig
from ssrtune.prompt_templates import JUDGE_TEMPLATE, render, template_text


def judge_prompt(template: str, item: JudgeInput, words: tuple[str, str]) -> str:
    return render(template, query=item.query, context=item.context or "", gold=item.gold,
                  answers=item.answers or [item.gold], candidate=item.candidate,
                  accept_word=words[0], reject_word=words[1])


class LocalLLMJudge(Judge):
    """Accept when P(accept word) / (P(accept word) + P(reject word)) after the prompt reaches the threshold."""

    def __init__(self, config: LocalLLMJudgeConfig, model: PreTrainedModel | None = None,
                 tokenizer: PreTrainedTokenizerBase | None = None):
        self.config = config
        self.template = template_text(config.template, JUDGE_TEMPLATE)
        self.model, self.tokenizer = model, tokenizer

    def _load(self) -> None:
        # Loaded on first use, so building a judge (e.g. to fingerprint it) costs nothing.
        if self.model is None:
            from ssrtune.models import load_model, load_tokenizer

            self.model, self.tokenizer = load_model(self.config.model), load_tokenizer(self.config.model)

    def prompt(self, item: JudgeInput) -> str:
        text = judge_prompt(self.template, item, self.config.verdict_words)
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        self._load()
        accept_word, reject_word = self.config.verdict_words
        words = [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in (accept_word, reject_word)]
        if not all(words):
            raise ValueError("a verdict word tokenizes to nothing")
        prompts = [self.tokenizer(self.prompt(i), add_special_tokens=False)["input_ids"] for i in items]
        lls = loglikelihoods(self.model, [(p, w) for p in prompts for w in words], self.config.batch_size,
                             self.config.bf16)
        out = []
        for accept_lp, reject_lp in zip(lls[0::2], lls[1::2]):
            p_accept = 1.0 / (1.0 + math.exp(reject_lp[0] - accept_lp[0]))
            verdict = "accept" if p_accept >= self.config.threshold else "reject"
            out.append(Judgment(verdict, f"P({accept_word})={p_accept:.3f}", p_accept))
        return out


_THINKING = re.compile(r"^\s*<think>.*?</think>", re.S)  # the reasoning block some models write first
_DECORATION = "*_`\"' \t\n"


def parse_verdict(reply: str, words: tuple[str, str]) -> Verdict | None:
    """accept / reject when the reply is exactly one verdict word, else None.

    Only decoration is forgiven: case, surrounding whitespace, quotes, markdown emphasis, one trailing full
    stop or exclamation mark, and a leading <think>...</think> block. "Yes, but..." or "Verdict: Yes" is not a
    verdict: guessing at free text is how a judge silently flips.
    """
    text = _THINKING.sub("", reply).strip(_DECORATION)
    if text[-1:] in (".", "!"):
        text = text[:-1].strip(_DECORATION)
    lowered = text.casefold()
    if lowered == words[0].strip().casefold():
        return "accept"
    if lowered == words[1].strip().casefold():
        return "reject"
    return None


class EndpointLLMJudge(Judge):
    """Ask an OpenAI-compatible server; a failed request or an unparseable reply is a failed verdict (the
    example then uses gold, and the failure is counted), never an exception."""

    def __init__(self, config: EndpointLLMJudgeConfig, endpoint=None):
        self.config = config
        self.template = template_text(config.template, JUDGE_TEMPLATE)
        self.endpoint = endpoint

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        from ssrtune.endpoint import ChatEndpoint, EndpointError

        # Built on first use: a rerun whose verdicts are all cached needs neither the server nor the key.
        self.endpoint = self.endpoint or ChatEndpoint(self.config.endpoint)
        words = self.config.verdict_words
        replies = self.endpoint.complete(
            [[{"role": "user", "content": judge_prompt(self.template, item, words)}] for item in items],
            max_tokens=self.config.max_tokens, temperature=0.0)
        out = []
        for reply in replies:
            if isinstance(reply, EndpointError):
                out.append(Judgment("failed", f"endpoint: {reply}"))
                continue
            verdict = parse_verdict(reply, words)
            out.append(Judgment(verdict, f"reply {reply.strip()[:80]!r}", float(verdict == "accept"))
                       if verdict else Judgment("failed", f"unparseable reply {reply.strip()[:200]!r}"))
        return out
