import pytest
import torch

from ssrtune.config.run import ModelConfig
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.config.train import TrainConfig
from ssrtune.training.trainer import NoTrainableTokensError, build_trainer, left_pad_collator, to_dataset
from tests.training_rows import fit, rows


def test_lora_training_learns_and_saves_an_adapter(tiny_model, tmp_path):
    result, out = fit(tiny_model, tmp_path, epochs=10, save_every="1000 steps")
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    curve = result["loss_curve"]
    assert result["lora"] and len(curve) >= 2 and curve[-1] < curve[0]
    merged = load_model(ModelConfig(name=str(tiny_model)), adapter=out)
    base = load_model(ModelConfig(name=str(tiny_model)))
    assert any(not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))


def test_full_fine_tuning_saves_whole_weights(tiny_model, tmp_path):
    result, out = fit(tiny_model, tmp_path, full=True, epochs=1, learning_rate=1e-3)
    assert not result["lora"] and (out / "model.safetensors").exists()
    tuned = load_model(ModelConfig(name=str(tiny_model)), adapter=out).state_dict()
    base = load_model(ModelConfig(name=str(tiny_model))).state_dict()
    assert tuned.keys() == base.keys()
    assert any(not torch.equal(tuned[k], base[k]) for k in base)  # the saved weights, not the base model's


def test_labels_cover_exactly_the_answer_and_end_of_turn(tiny_model):
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model)))
    trainer = SFTTrainer(model=load_model(ModelConfig(name=str(tiny_model))), processing_class=tokenizer,
                         train_dataset=to_dataset(rows()),
                         args=SFTConfig(output_dir="/tmp/unused", bf16=False, use_cpu=True, report_to="none"))
    for example, row in zip(trainer.train_dataset, rows()):
        trained = [t for t in example["labels"] if t != -100]
        assert tokenizer.decode(trained) == row["target"] + "<|im_end|>\n"


def test_answer_only_loss_matches_the_full_logits_loss(tiny_model):
    """Our logits_to_keep loss on a left-padded batch equals the plain loss over all positions, right-padded."""
    from trl import SFTConfig

    from ssrtune.training.trainer import AnswerOnlySFTTrainer

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model)))
    model = load_model(ModelConfig(name=str(tiny_model)))
    trainer = AnswerOnlySFTTrainer(model=model, processing_class=tokenizer, train_dataset=to_dataset(rows()),
                                   args=SFTConfig(output_dir="/tmp/unused", bf16=False, use_cpu=True,
                                                  report_to="none"))
    examples = list(trainer.train_dataset)
    batch = left_pad_collator(tokenizer.pad_token_id)(examples)
    ours = trainer.compute_loss(model, dict(batch))
    reference = 0.0
    count = 0
    for example in examples:
        ids = torch.tensor([example["input_ids"]])
        labels = torch.tensor([example["labels"]])
        logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        mask = target != -100
        reference += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum")
        count += int(mask.sum())
    assert ours.item() == pytest.approx((reference / count).item(), rel=1e-4)


def test_too_short_max_length_fails_loudly(tiny_model, tmp_path):
    with pytest.raises(NoTrainableTokensError, match="max_length"):
        fit(tiny_model, tmp_path, max_length=20)


def test_training_resumes_from_its_last_checkpoint(tiny_model, tmp_path):
    _, out = fit(tiny_model, tmp_path, epochs=2, save_every="2 steps")
    assert (out / "checkpoint-4").exists()
    result, _ = fit(tiny_model, tmp_path, epochs=3, save_every="2 steps")
    assert result["resumed_from"].endswith("checkpoint-4") and result["steps"] == 6


def test_tensorboard_receives_the_loss_of_every_logging_step(tiny_model, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 6 examples, batch 3, 10 epochs: 20 steps, logged every 5
    result, out = fit(tiny_model, tmp_path, epochs=10, save_every="1000 steps", report_to="tensorboard",
                      run_name="tiny-ssr")
    (event_file,) = out.glob("runs/*/events.out.tfevents.*")
    events = EventAccumulator(str(event_file.parent))
    events.Reload()
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == [5, 10, 15, 20]
    assert [e.value for e in logged] == pytest.approx(result["loss_curve"], rel=1e-6)
    assert result["run_name"] == "tiny-ssr"


def test_a_finished_model_keeps_no_checkpoints_unless_asked(tiny_run):
    from ssrtune.stages.base import trained_models
    from ssrtune.stages.train import Train
    from tests.tiny_run import run_stage

    def trained(*overrides):
        config = tiny_run.config("methods=[sft]", "train.batch_size=3", "train.save_every=1 steps", *overrides)
        return run_stage(config, Train(trained_models(config)[0]), fresh=True)

    out = trained()
    assert (out / "ssrtune_train.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not list(out.glob("checkpoint-*"))
    assert sorted(p.name for p in trained("train.keep_checkpoints=true").glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2"]


def test_dft_optimises_each_answer_tokens_nll_weighted_by_its_detached_probability(tiny_model, tmp_path):
    """train.loss_type reaches the loss the trainer optimises: with dft (TRL's loss), each answer token's NLL times
    its probability under the model, with no gradient through that weight, summed and divided by the answer tokens;
    with nll, the plain token mean. Checked by value and by the gradient of the LoRA weights."""
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_model)))
    losses = {}
    for loss_type in ("nll", "dft"):
        config = TrainConfig(loss_type=loss_type, batch_size=6, warmup_ratio=0.0)
        trainer = build_trainer(load_model(ModelConfig(name=str(tiny_model))), tokenizer, rows(), config,
                                tmp_path / loss_type)
        model = trainer.model
        batch = left_pad_collator(tokenizer.pad_token_id)(list(trainer.train_dataset))
        loss = trainer.compute_loss(model, dict(batch))
        trained = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, trained)

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        answer = targets != -100
        log_p = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[answer]
        weight = log_p.exp().detach() if loss_type == "dft" else torch.ones_like(log_p)
        expected = (-log_p * weight).sum() / answer.sum()
        expected_grads = torch.autograd.grad(expected, trained)

        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        for ours, theirs in zip(grads, expected_grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)
        losses[loss_type] = loss.item()
    assert losses["dft"] < losses["nll"]  # the same batch and model: only the weighting differs
