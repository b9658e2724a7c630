"""The KL penalty to the base model (`train.kl_beta`): how far the fine-tuned model's next-token distribution moved
from the base model's, at the answer tokens the loss trains on.

Per answer token t, KL(base ‖ model) = Σ_v p_base(v | x_<t) · (log p_base(v | x_<t) − log p_model(v | x_<t)), over
the whole vocabulary v: the forward KL, with the base model's distribution as the reference. The trainer adds
β times its sum over the answer tokens to the NLL's sum before dividing both by the same number of answer tokens, so
the penalty is a mean over the tokens the NLL averages over. The base is the same model with its LoRA adapter
disabled (PEFT's `disable_adapter`): no second copy of the weights, and no gradient through the base side.
"""

from __future__ import annotations

import torch
from torch import nn


def base_logits(model: nn.Module, unwrapped: nn.Module, inputs: dict[str, torch.Tensor], keep: int) -> torch.Tensor:
    """The logits of the last `keep` positions but one (those that predict the answer) with the adapter disabled, in
    float32 and without gradient.

    `model` is what the Trainer runs (maybe wrapped for DDP), `unwrapped` the `PeftModel` inside it, whose
    `disable_adapter` sends every LoRA layer's input through its base layer alone and, on exit, turns the adapter
    back on with its weights trainable again (peft: `PeftModel.disable_adapter`, `BaseTunerLayer.enable_adapters`).
    """
    with torch.no_grad(), unwrapped.disable_adapter():
        return model(**inputs, use_cache=False, logits_to_keep=keep).logits[:, :-1].float()


def kl_to_base_sum(logits: torch.Tensor, base: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ over the answer tokens (`targets` != -100) of KL(base ‖ model) at that token, from the model's `logits` and
    the base's (`base`, no gradient), both [batch, positions, vocabulary] aligned with `targets`."""
    answer = targets != -100
    log_model = torch.log_softmax(logits[answer], dim=-1)
    log_base = torch.log_softmax(base[answer], dim=-1)
    return (log_base.exp() * (log_base - log_model)).sum()
