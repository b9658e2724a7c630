"""Retention of general ability: log-likelihood benchmarks, GSM8K, and drift from the base model.

Written by hand rather than through lm-evaluation-harness because the harness fetches its data from the Hub at
run time, which a machine without network (and our embedded default) cannot do; the scoring follows the
harness's `multiple_choice` semantics, and the harness itself is an optional backend (`ssrtune.inference.harness`).
Every model call goes through an `ssrtune.inference.lm.LM`: the benchmarks run on any engine that gives
log-likelihoods, the KL on any engine that gives whole next-token distributions (`engine.Capabilities`).
"""

from __future__ import annotations

import torch

from ssrtune.evaluation.benchmarks import MathProblem, Question, gsm8k_exemplars, gsm8k_prompt
from ssrtune.inference.lm import LM
from ssrtune.evaluation.stats import accuracy, mean
from ssrtune.text import final_number


def score_questions(questions: list[Question], lls: list[tuple[float, bool]]) -> list[dict]:
    """Per-question predictions: acc picks the highest log-likelihood, acc_norm divides it by the length of the
    choice text in characters first (the harness's acc_norm)."""
    rows, offset = [], 0
    for q in questions:
        scores = [ll for ll, _ in lls[offset: offset + len(q.requests)]]
        offset += len(q.requests)
        normed = [s / max(1, len(c)) for s, c in zip(scores, q.choices)]
        pred = max(range(len(scores)), key=scores.__getitem__)
        pred_norm = max(range(len(normed)), key=normed.__getitem__)
        rows.append({"id": q.id, "gold": q.gold, "lls": scores, "pred": pred, "pred_norm": pred_norm,
                     "acc": pred == q.gold, "acc_norm": pred_norm == q.gold, "gold_ll": scores[q.gold]})
    return rows


def multiple_choice(lm: LM, questions: list[Question], batch_size: int, name: str) -> list[dict]:
    requests = [r for q in questions for r in q.requests]
    return score_questions(questions, lm.loglikelihood(requests, batch_size=batch_size, description=name))


def summarise(rows: list[dict], metrics: tuple[str, ...]) -> dict:
    out = {m: accuracy([bool(r[m]) for r in rows]) for m in metrics}
    out["gold_ll"] = mean([r["gold_ll"] for r in rows])
    return out


# --- GSM8K ------------------------------------------------------------------------------------------------------

def gsm8k(lm: LM, problems: list[MathProblem], shots: int, max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy chain-of-thought answers with `shots` exemplars; correct when the final number equals the gold one.
    The gold worked answer's log-likelihood is kept too, as a finer measure of drift."""
    exemplars = gsm8k_exemplars()[:shots]
    prompts = [gsm8k_prompt(p.question, exemplars) for p in problems]
    lls = lm.loglikelihood([(t, f" {p.solution}") for t, p in zip(prompts, problems)], batch_size=batch_size,
                           description="gsm8k gold")
    answers = lm.generate(prompts, max_new_tokens, stop=["Question:", "\n\n"], batch_size=batch_size,
                          description="gsm8k")
    rows = []
    for p, answer, (ll, _) in zip(problems, answers, lls):
        predicted = final_number(answer)
        rows.append({"id": p.id, "prediction": answer.strip(), "extracted": predicted, "gold": p.answer,
                     "exact_match": predicted == final_number(p.answer), "gold_ll": ll})
    return rows


# --- drift from the base model on general prompts ---------------------------------------------------------------

GENERAL_PROMPTS = [
    "Write a short poem about the sea.",
    "Explain how a rainbow forms.",
    "Give me three tips for a good night's sleep.",
    "What is the difference between weather and climate?",
    "Write a Python function that reverses a string.",
    "Summarise the story of Cinderella in two sentences.",
    "How do I make a cup of tea?",
    "Why do leaves change colour in autumn?",
    "Write a polite email declining a meeting invitation.",
    "What are the main causes of inflation?",
    "Describe a cat to someone who has never seen one.",
    "List five fruits that are high in vitamin C.",
    "What is 15 multiplied by 12? Explain your steps.",
    "Translate 'good morning, how are you?' into French.",
    "Suggest a name for a small bakery and explain why.",
    "What should I pack for a weekend hiking trip?",
]


def kl_reference(lm: LM, prompts: list[str], max_new_tokens: int, top_k: int, batch_size: int
                 ) -> dict[str, torch.Tensor]:
    """The base model's greedy responses to general prompts and, at every response position, its top-k next-token
    log-probabilities and the log of the remaining mass, stored so that each fine-tuned model is compared
    without loading the base model beside it."""
    chats = [[{"role": "user", "content": p}] for p in prompts]
    responses = lm.generate(chats, max_new_tokens, batch_size=batch_size)
    sequences, n_last = [], []
    for chat, response in zip(chats, responses):
        prompt_ids, response_ids = lm.answer_tokens(chat, response.strip())
        sequences.append(prompt_ids + response_ids)
        n_last.append(len(response_ids))
    ids, logps, tails = [None] * len(sequences), [None] * len(sequences), [None] * len(sequences)
    for index, logprobs in lm.token_logprobs(sequences, n_last, batch_size=batch_size, description="kl reference"):
        top = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
        ids[index], logps[index] = top.indices.to(torch.int32), top.values
        tails[index] = _log1mexp(torch.logsumexp(top.values.double(), dim=-1)).float()
    return {"sequence": torch.tensor([t for s in sequences for t in s], dtype=torch.int32),
            "sequence_length": torch.tensor([len(s) for s in sequences], dtype=torch.int32),
            "n_scored": torch.tensor(n_last, dtype=torch.int32),
            "top_ids": torch.cat(ids), "top_logprobs": torch.cat(logps), "tail_logprob": torch.cat(tails)}


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, clamped away from log(0) when the top-k hold all the mass."""
    return torch.log(-torch.expm1(x.clamp(max=-1e-12)))


def coarse_kl(p_top: torch.Tensor, p_tail: torch.Tensor, q_top: torch.Tensor, q_tail: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) per position from log-probabilities of the same top-k tokens plus one bucket for all the others.

    This is the KL of the distributions coarsened to k + 1 outcomes: a lower bound on the full KL, and equal
    to it when k is the whole vocabulary (log-sum inequality).
    """
    p_top, p_tail, q_top, q_tail = (t.double() for t in (p_top, p_tail, q_top, q_tail))
    return (p_top.exp() * (p_top - q_top)).sum(-1) + p_tail.exp() * (p_tail - q_tail)


def position_kl(reference: dict[str, torch.Tensor], rows: slice, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(base || model) at each of the reference's positions `rows`, from the model's log-probabilities there, on
    the model's device: the reference is read on the CPU (safetensors), so every piece of it goes where `logprobs` is
    before they meet."""
    device = logprobs.device
    q_top = logprobs.gather(-1, reference["top_ids"][rows].long().to(device))
    q_tail = _log1mexp(torch.logsumexp(q_top.double(), dim=-1))
    return coarse_kl(reference["top_logprobs"][rows].to(device), reference["tail_logprob"][rows].to(device),
                     q_top, q_tail).clamp(min=0)


def kl_from_reference(lm: LM, reference: dict[str, torch.Tensor], batch_size: int) -> dict:
    """Mean KL(base || model) per response token over the base model's responses, and per prompt."""
    lengths = reference["sequence_length"].tolist()
    n_scored = reference["n_scored"].tolist()
    flat = reference["sequence"].tolist()
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    sequences = [flat[s: s + n] for s, n in zip(starts, lengths)]
    offsets = [sum(n_scored[:i]) for i in range(len(n_scored))]
    per_prompt: list[float] = [0.0] * len(sequences)
    total = 0.0
    for index, logprobs in lm.token_logprobs(sequences, n_scored, batch_size=batch_size, description="kl"):
        rows = slice(offsets[index], offsets[index] + n_scored[index])
        kl = position_kl(reference, rows, logprobs).cpu()
        per_prompt[index] = float(kl.mean())
        total += float(kl.sum())
    return {"mean_kl": total / sum(n_scored), "per_prompt": per_prompt, "n_prompts": len(sequences),
            "n_tokens": sum(n_scored), "top_k": int(reference["top_ids"].shape[-1])}
