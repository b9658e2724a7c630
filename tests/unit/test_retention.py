"""Scoring against hand-computed examples, and the batched scorer against a plain forward pass on the tiny model."""

import math

import pytest
import torch

from ssrtune.evaluation.benchmarks import Question, stratified_sample
from ssrtune.inference.local import TransformersLM
from ssrtune.inference.scoring import encode_request
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.evaluation.retention import coarse_kl, kl_from_reference, kl_reference, position_kl, score_questions
from ssrtune.config.fields import ModelConfig


def test_acc_and_acc_norm_by_hand():
    q = Question("q", [("ctx", " a"), ("ctx", " bbbbbb"), ("ctx", " cc")], ["a", "bbbbbb", "cc"], gold=1, stratum="1")
    # raw: choice 0 (-2) wins; per character: -2/1, -3/6 = -0.5, -4/2 = -2 -> choice 1 wins
    rows = score_questions([q], [(-2.0, False), (-3.0, False), (-4.0, False)])
    assert rows[0]["pred"] == 0 and rows[0]["pred_norm"] == 1
    assert rows[0]["acc"] is False and rows[0]["acc_norm"] is True and rows[0]["gold_ll"] == -3.0


def test_coarse_kl_on_tiny_distributions():
    p = torch.tensor([0.5, 0.3, 0.2]).log()
    q = torch.tensor([0.25, 0.25, 0.5]).log()
    exact = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    empty = torch.tensor(-1e30)
    # k = the whole vocabulary: the exact KL
    assert float(coarse_kl(p, empty, q, empty)) == pytest.approx(exact, rel=1e-6)
    # top-1 plus one bucket: 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75), a lower bound
    coarse = float(coarse_kl(p[:1], torch.tensor(0.5).log(), q[:1], torch.tensor(0.75).log()))
    assert coarse == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))
    assert 0 <= coarse <= exact


def test_stratified_sample_keeps_shares_and_is_seeded():
    items = [Question(str(i), [], [], 0, "a" if i < 60 else "b") for i in range(100)]
    sample = stratified_sample(items, 10, seed=1)
    assert len(sample) == 10 and sum(q.stratum == "a" for q in sample) == 6
    assert sample == stratified_sample(items, 10, seed=1) != stratified_sample(items, 10, seed=2)
    assert [int(q.id) for q in sample] == sorted(int(q.id) for q in sample)
    assert stratified_sample(items, None, 0) == items


@pytest.fixture(scope="module")
def tiny(tiny_model):
    config = ModelConfig(name=str(tiny_model))
    return load_model(config), load_tokenizer(config)


def lm(model, tokenizer) -> TransformersLM:
    """The inference layer over a model in memory, in float32 on the CPU (no autocast, whatever the CPU)."""
    return TransformersLM(ModelConfig(name="in-memory", dtype="float32", device_map="cpu"), batch_size=2,
                          loaded=(model, tokenizer))


def test_encode_request_moves_trailing_space_to_the_continuation(tiny):
    _, tok = tiny
    context, continuation = encode_request(tok, "The sky is ", "blue")
    assert tok.decode(context) == "The sky is" and tok.decode(continuation) == " blue"


def test_batched_loglikelihoods_match_a_plain_forward_pass(tiny):
    model, tok = tiny
    requests = [("The sky is", " blue on a clear day."), ("Who wrote", " the letter?"), ("Who wrote", " Anna"),
                ("Bread is baked every morning", " by the baker.")]
    got = lm(model, tok).loglikelihood(requests, batch_size=3, description="score")
    for (context, continuation), (ll, greedy) in zip(requests, got):
        ctx, cont = encode_request(tok, context, continuation)
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, len(ctx) - 1:-1].float(), -1)
        expected = logprobs.gather(-1, torch.tensor(cont)[:, None]).sum()
        assert ll == pytest.approx(float(expected), abs=1e-4)
        assert greedy == bool((logprobs.argmax(-1) == torch.tensor(cont)).all())


def test_the_kl_reference_scores_the_tokens_the_chat_template_and_the_answer_make(tiny):
    model, tok = tiny
    chat = [{"role": "user", "content": "What colour is the sky?"}]
    prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert lm(model, tok).answer_tokens(chat, "Blue.") == (tok(prompt, add_special_tokens=False)["input_ids"],
                                                             tok("Blue." + tok.eos_token, add_special_tokens=False)
                                                             ["input_ids"])


def test_kl_from_the_reference_equals_the_exact_kl_with_the_whole_vocabulary(tiny, tiny_model, tmp_path):
    from tests.tiny_run import build_tiny_model

    model, tok = tiny
    vocab = model.config.vocab_size
    prompts = ["What colour is the sky?", "Who wrote the letter?"]
    reference = kl_reference(lm(model, tok), prompts, 5, vocab, 2)
    same = kl_from_reference(lm(model, tok), reference, 2)
    assert same["mean_kl"] == pytest.approx(0.0, abs=1e-6) and same["n_prompts"] == 2
    other = load_model(ModelConfig(name=str(build_tiny_model(tmp_path / "other", seed=1))))
    # by hand: full distributions of both models over every scored position
    lengths, n_scored = reference["sequence_length"].tolist(), reference["n_scored"].tolist()
    flat, start, total = reference["sequence"].tolist(), 0, 0.0
    for length, n in zip(lengths, n_scored):
        ids = torch.tensor([flat[start: start + length]])
        start += length
        with torch.no_grad():
            p = torch.log_softmax(model(ids).logits[0, -n - 1:-1].double(), -1)
            q = torch.log_softmax(other(ids).logits[0, -n - 1:-1].double(), -1)
        total += float((p.exp() * (p - q)).sum())
    exact = total / sum(n_scored)
    assert kl_from_reference(lm(other, tok), reference, 2)["mean_kl"] == pytest.approx(exact, rel=1e-3)
    coarse = kl_from_reference(lm(other, tok), kl_reference(lm(model, tok), prompts, 5, 4, 2), 2)["mean_kl"]
    assert 0 < coarse <= exact + 1e-9


def test_the_kl_meets_the_cpu_reference_on_the_models_device(tiny):
    """The reference comes from safetensors on the CPU, the model's log-probabilities from the model's device (CUDA on a
    GPU): every piece of the reference must move there. Checked with the model's tensors on `meta`, where meeting a CPU
    tensor fails as it does on CUDA, so the mistake shows on a machine without a GPU."""
    model, tok = tiny
    reference = kl_reference(lm(model, tok), ["What colour is the sky?"], 4, 8, 1)
    assert {t.device.type for t in reference.values()} == {"cpu"}
    n = int(reference["n_scored"][0])
    logprobs = torch.randn(n, model.config.vocab_size).log_softmax(-1)
    on_cpu = position_kl(reference, slice(0, n), logprobs)
    with OneDevice():  # some CPU ops take an index from another device (`gather` does): CUDA refuses, so must this
        on_meta = position_kl(reference, slice(0, n), logprobs.to("meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == on_cpu.shape == (n,)


class OneDevice(torch.overrides.TorchFunctionMode):
    """Fails any op whose tensor arguments sit on different devices, as CUDA does (a 0-dim tensor, a scalar, may meet
    any device there too)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        def tensors(value):
            if isinstance(value, torch.Tensor):
                return [value]
            if isinstance(value, (list, tuple)):
                return [t for item in value for t in tensors(item)]
            return []

        devices = {t.device for t in tensors([*args, *(kwargs or {}).values()]) if t.dim() > 0}
        assert len(devices) <= 1, f"{func.__name__} meets tensors on {sorted(map(str, devices))}"
        return func(*args, **(kwargs or {}))


def test_lm_eval_backend_plumbing(tiny, monkeypatch):
    """The harness can't fetch its data here: check the call and the conversion of its results, and the error."""
    import sys
    import types

    from ssrtune.extras import MissingExtraError
    from ssrtune.inference.harness import harness_results
    from ssrtune.stages.retention_stages import from_lm_eval
    from ssrtune.evaluation.stats import Z95

    model, tok = tiny
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(MissingExtraError, match="pip install 'ssrtune\\[lm-eval\\]'"):
        harness_results(lm(model, tok), ["arc_easy"], 10, 4)

    calls = {}

    class HFLM:
        def __init__(self, pretrained, tokenizer, batch_size):
            calls["model"], calls["batch_size"] = pretrained, batch_size

    def simple_evaluate(model, tasks, limit, log_samples):
        calls["tasks"], calls["limit"] = tasks, limit
        return {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.1,
                                         "acc_norm,none": 0.6, "acc_norm_stderr,none": 0.1}}}

    harness = types.ModuleType("lm_eval")
    harness.simple_evaluate = simple_evaluate
    models_module = types.ModuleType("lm_eval.models")
    huggingface = types.ModuleType("lm_eval.models.huggingface")
    huggingface.HFLM = HFLM
    monkeypatch.setitem(sys.modules, "lm_eval", harness)
    monkeypatch.setitem(sys.modules, "lm_eval.models", models_module)
    monkeypatch.setitem(sys.modules, "lm_eval.models.huggingface", huggingface)
    raw = harness_results(lm(model, tok), ["arc_easy"], 10, 4)
    assert calls == {"model": model, "batch_size": 4, "tasks": ["arc_easy"], "limit": 10}
    ours = from_lm_eval(raw)["arc_easy"]
    assert ours["primary"] == "acc_norm" and ours["acc_norm"]["value"] == 0.6
    assert ours["acc"]["ci95"] == pytest.approx([0.5 - Z95 * 0.1, 0.5 + Z95 * 0.1])
