"""train.kl_beta: the loss plus beta x KL(base ‖ model), averaged over the answer tokens, the base being the model
with its LoRA adapter disabled; checked against a hand computation on the tiny model."""

import math

import pytest
import torch

from ssrtune.config.run import ModelConfig
from ssrtune.config.train import TrainConfig
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.training.kl_penalty import base_logits
from ssrtune.training.trainer import build_trainer, left_pad_collator
from tests.training_rows import fit, rows

BETA = 0.5


def trainer_and_batch(tiny_model, tmp_path, kl_beta=BETA):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model)))
    model = load_model(ModelConfig(name=str(tiny_model)))
    with torch.no_grad():  # a random model's next-token distributions are near uniform: sharpen them
        model.get_output_embeddings().weight.mul_(10)
    trainer = build_trainer(model, tokenizer, rows(),
                            TrainConfig(kl_beta=kl_beta, batch_size=6, warmup_ratio=0.0), tmp_path / "model")
    return trainer, left_pad_collator(tokenizer.pad_token_id)(list(trainer.train_dataset))


def by_hand(model, batch):
    """(mean NLL, mean KL(base ‖ model)) over the answer tokens, from the logits of every position: the base's with
    the adapter disabled and without gradient, the model's with gradient."""
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad(), model.disable_adapter():
        base = model(**inputs).logits[:, :-1].float()
    logits = model(**inputs).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    answer = targets != -100
    log_model, log_base = torch.log_softmax(logits, -1)[answer], torch.log_softmax(base, -1)[answer]
    nll = -log_model.gather(-1, targets[answer].unsqueeze(-1)).mean()
    kl = (log_base.exp() * (log_base - log_model)).sum(-1).mean()
    reverse = (log_model.exp() * (log_model - log_base)).sum(-1).mean()
    return nll, kl, reverse


def move_the_adapter(model):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))


def test_the_penalty_is_zero_at_the_first_step(tiny_model, tmp_path):
    # LoRA's B matrices start at zero: the model is its base, and the loss is the NLL alone, exactly.
    trainer, batch = trainer_and_batch(tiny_model, tmp_path)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    trainer.kl_beta = 0.0
    assert loss.item() == trainer.compute_loss(trainer.model, dict(batch)).item()
    nll, kl, _ = by_hand(trainer.model, batch)
    assert kl.item() == 0.0 and loss.item() == pytest.approx(nll.item(), rel=1e-6)


def test_once_the_adapter_moved_the_loss_is_the_nll_plus_beta_times_the_mean_kl_from_the_base(tiny_model, tmp_path):
    trainer, batch = trainer_and_batch(tiny_model, tmp_path)
    model = trainer.model
    move_the_adapter(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    loss = trainer.compute_loss(model, dict(batch))
    grads = torch.autograd.grad(loss, trained)

    nll, kl, reverse = by_hand(model, batch)
    expected = nll + BETA * kl
    assert kl.item() > 1e-3 and abs(kl.item() - reverse.item()) > 1e-3  # the check tells the two directions apart
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # The gradient is the one with the base side held constant.
    for ours, theirs in zip(grads, torch.autograd.grad(expected, trained)):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6)
    # The adapter is on again and still trains after the base's pass.
    assert all(p.requires_grad for p in trained)
    assert by_hand(model, batch)[1].item() == pytest.approx(kl.item(), rel=1e-6)


def test_the_base_side_carries_no_gradient(tiny_model, tmp_path):
    trainer, batch = trainer_and_batch(tiny_model, tmp_path)
    model = trainer.model
    move_the_adapter(model)
    model.enable_input_require_grads()  # as with gradient checkpointing: the embeddings' output would carry a graph
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids")}
    base = base_logits(model, model, inputs, keep=batch["input_ids"].size(1))
    assert not base.requires_grad and base.grad_fn is None
    with torch.no_grad(), model.disable_adapter():
        torch.testing.assert_close(base, model(**inputs).logits[:, :-1].float())


def test_training_with_the_penalty_runs_and_records_its_loss(tiny_model, tmp_path):
    result, out = fit(tiny_model, tmp_path, kl_beta=BETA, epochs=2)
    assert result["steps"] == 4 and all(math.isfinite(loss) for loss in result["loss_curve"])
    assert (out / "adapter_model.safetensors").exists()
