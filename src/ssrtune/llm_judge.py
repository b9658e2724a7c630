"""The `llm` judge: a language model compares the candidate with the gold answer, guided by a prompt template.

The local backend reads the verdict from the log-probabilities of the two verdict words right after the prompt,
so there is no free text to parse and a whole batch is one forward pass. The endpoint backend asks an
OpenAI-compatible server and parses its reply strictly: anything but one verdict word is a failed verdict.
"""

from __future__ import annotations

import math
import re

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.config import JudgeConfig
from ssrtune.judge import Judge, JudgeInput, Judgment, Verdict
from ssrtune.prompt_templates import JUDGE_TEMPLATE, render, template_text


def judge_prompt(template: str, item: JudgeInput, words: tuple[str, str]) -> str:
    return render(template, query=item.query, context=item.context or "", gold=item.gold,
                  answers=item.answers or [item.gold], candidate=item.candidate,
                  accept_word=words[0], reject_word=words[1])


@torch.inference_mode()
def continuation_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                          continuations: list[str], bf16: bool | None = None) -> torch.Tensor:
    """log P(continuation | prompt), summed over its tokens: a [len(prompts), len(continuations)] tensor.

    Each forward row is a prompt followed by a continuation minus its last token; the rows of single-token
    continuations are all the bare prompt, so they are run once. Rows are left-padded so that every row ends
    at the same position and only the last few positions need logits.
    """
    from ssrtune.generate import autocast

    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    cont_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if not all(cont_ids):
        raise ValueError("a continuation tokenizes to nothing")
    rows: dict[tuple[int, ...], int] = {}
    for p in prompt_ids:
        for c in cont_ids:
            rows.setdefault(tuple(p + c[:-1]), len(rows))
    width = max(map(len, rows))
    keep = max(map(len, cont_ids))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, index in rows.items():
        input_ids[index, width - len(row):] = torch.tensor(row)
        attention_mask[index, width - len(row):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with autocast(bf16, model.device.type):
        logits = model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                       position_ids=position_ids.to(model.device), logits_to_keep=keep).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)  # [rows, keep, vocab]
    out = torch.empty(len(prompts), len(continuations))
    for i, p in enumerate(prompt_ids):
        for j, c in enumerate(cont_ids):
            index = rows[tuple(p + c[:-1])]
            # the logit predicting c[t] sits at the row's position len(p) - 1 + t, i.e. keep - len(c) + t here
            positions = torch.arange(keep - len(c), keep)
            out[i, j] = logprobs[index, positions, torch.tensor(c)].sum()
    return out


class LocalLLMJudge(Judge):
    """Accept when P(accept word) / (P(accept word) + P(reject word)) after the prompt reaches the threshold."""

    def __init__(self, config: JudgeConfig, model: PreTrainedModel | None = None,
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
        out = []
        for start in range(0, len(items), self.config.batch_size):
            batch = items[start: start + self.config.batch_size]
            logprobs = continuation_logprobs(self.model, self.tokenizer, [self.prompt(i) for i in batch],
                                             [accept_word, reject_word], self.config.bf16)
            for accept_lp, reject_lp in logprobs.tolist():
                p_accept = 1.0 / (1.0 + math.exp(reject_lp - accept_lp))
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

    def __init__(self, config: JudgeConfig, endpoint=None):
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


def build_llm_judge(config: JudgeConfig) -> Judge:
    return EndpointLLMJudge(config) if config.backend == "endpoint" else LocalLLMJudge(config)
