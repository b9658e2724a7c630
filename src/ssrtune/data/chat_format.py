"""How a model's chat template takes the task's turns, found by rendering probe conversations with it.

Templates differ in what they do with a system turn: most render it, some raise (Mistral-7B-Instruct v0.1/v0.2 before
their 2024 update, Gemma 2), some drop it (Phi-3-medium), and Mistral's v3 template prints it only when the last turn
is the user's, so that the prompt alone and the prompt followed by the answer differ. Where the template does not
render the system text in both, it is folded into the first user turn, as Mistral's own tools do. Training needs the
tokens of a prompt to be a prefix of the tokens of the prompt and its answer: TRL starts the loss where the two part,
so a template that breaks this puts the loss on the prompt; `prompt_and_answer_ids` refuses it, naming the template.
"""

from __future__ import annotations

import hashlib
import logging

from jinja2 import TemplateError

log = logging.getLogger(__name__)

_PROBE_SYSTEM = "Probe instructions from ssrtune."
_PROBE_USER = "Probe question from ssrtune?"
_PROBE_ANSWER = "Probe answer from ssrtune."
_SYSTEM_ROLE: dict[str, bool] = {}  # chat template text -> whether it renders a system turn where we need it
_TOLD: set[str] = set()  # templates whose folding was said on the console


class ChatTemplateError(ValueError):
    """A chat template that cannot render the task's turns, or whose prompt is not a prefix of prompt + answer."""


def template_name(tokenizer, model: str | None = None) -> str:
    """`model`'s chat template, named so that a user can find it: the model and a digest of the template text."""
    digest = hashlib.sha256((tokenizer.chat_template or "").encode("utf-8")).hexdigest()[:12]
    return f"model {model or tokenizer.name_or_path!r} (chat template sha256 {digest}...)"


def _ids(tokenizer, turns: list[dict], generation: bool) -> list[int]:
    """The tokens of `turns` as TRL's SFTTrainer and generation render them."""
    return list(tokenizer.apply_chat_template(turns, tokenize=True, add_generation_prompt=generation,
                                              return_dict=True)["input_ids"])


def has_system_role(tokenizer) -> bool:
    """Whether the template renders a system turn's text both in a prompt and in the same prompt followed by an
    answer (a template that raises on it, drops it, or prints it in one rendering only has none)."""
    template = tokenizer.chat_template or ""
    if template not in _SYSTEM_ROLE:
        turns = [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER}]
        try:
            rendered = [tokenizer.apply_chat_template(turns + tail, tokenize=False, add_generation_prompt=not tail)
                        for tail in ([], [{"role": "assistant", "content": _PROBE_ANSWER}])]
            _SYSTEM_ROLE[template] = all(_PROBE_SYSTEM in text for text in rendered)
        except TemplateError:
            _SYSTEM_ROLE[template] = False
    return _SYSTEM_ROLE[template]


def chat_turns(turns: list[dict], tokenizer, model: str | None = None) -> list[dict]:
    """`turns` as the model's template takes them: a leading system turn is folded into the first user turn
    (`system text`, a blank line, the user's text) where the template has no system role; said once per template."""
    if not turns or turns[0]["role"] != "system" or has_system_role(tokenizer):
        return turns
    name = template_name(tokenizer, model)
    if name not in _TOLD:
        _TOLD.add(name)
        log.warning("%s has no system role: the system prompt is folded into the first user turn", name)
    system, rest = turns[0]["content"], [dict(turn) for turn in turns[1:]]
    first_user = next(i for i, turn in enumerate(rest) if turn["role"] == "user")
    rest[first_user]["content"] = f"{system}\n\n{rest[first_user]['content']}"
    return rest


def prompt_and_answer_ids(tokenizer, turns: list[dict], answer: str, where: str,
                          model: str | None = None) -> tuple[list[int], list[int]]:
    """The tokens of the prompt (`turns` with the assistant's turn opened) and of the prompt followed by `answer`,
    rendered as TRL renders a prompt/completion pair; a ChatTemplateError naming `where` (e.g. the record) and the
    template when the template fails or the first is not a prefix of the second."""
    try:
        prompt = _ids(tokenizer, turns, generation=True)
        full = _ids(tokenizer, turns + [{"role": "assistant", "content": answer}], generation=False)
    except TemplateError as err:
        raise ChatTemplateError(f"{where}: {template_name(tokenizer, model)} cannot render it: {err}") from None
    if full[:len(prompt)] != prompt:
        part = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
        raise ChatTemplateError(
            f"{where}: {template_name(tokenizer, model)} renders the prompt alone differently than followed by the "
            f"answer (the tokens part at {tokenizer.decode(prompt[part:part + 8])!r} / "
            f"{tokenizer.decode(full[part:part + 8])!r}), so training would put its loss on prompt tokens. Give the "
            "model a chat template whose prompt is a prefix of prompt + answer (the tokenizer's `chat_template`)")
    return prompt, full


def check_chat_template(tokenizer, model: str | None = None) -> None:
    """Refuse, before anything runs, a template that cannot render a probe conversation (system, user, answer) the
    way training needs it."""
    turns = chat_turns([{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER}],
                       tokenizer, model)
    prompt_and_answer_ids(tokenizer, turns, _PROBE_ANSWER, "a probe conversation", model)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The tokens that end the assistant's turn: the tokenizer's eos, and the first special token the template puts
    after an answer where that is another (Gemma's <end_of_turn>, Phi-3's <|end|>, Llama 3's <|eot_id|>)."""
    special = set(tokenizer.all_special_ids) | {i for i, token in tokenizer.added_tokens_decoder.items()
                                                 if token.special}
    turns = [{"role": "user", "content": _PROBE_USER}]
    try:
        prompt, full = prompt_and_answer_ids(tokenizer, turns, _PROBE_ANSWER, "a probe conversation")
    except ChatTemplateError:
        prompt, full = [], []
    ends = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    after = [token for token in full[len(prompt):] if token in special]
    return ends + [after[0]] if after and after[0] not in ends else ends
