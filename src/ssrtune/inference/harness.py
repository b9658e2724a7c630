"""lm-evaluation-harness (`evaluate.retention.harness: lm-eval`) on the transformers engine's model object, for
machines that reach the harness's data."""

from __future__ import annotations

from ssrtune.extras import import_extra
from ssrtune.inference.local import TransformersLM


def harness_results(lm: TransformersLM, tasks: list[str], limit: int | None, batch_size: int) -> dict:
    """The harness's numeric results per task, with the model already loaded (and placed) by `lm`."""
    lm_eval = import_extra("lm_eval", "lm-eval", "evaluate.retention.harness=lm-eval")
    HFLM = import_extra("lm_eval.models.huggingface", "lm-eval", "evaluate.retention.harness=lm-eval").HFLM
    results = lm_eval.simple_evaluate(model=HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size),
                                      tasks=tasks, limit=limit, log_samples=False)
    return {name: {k: v for k, v in values.items() if isinstance(v, (int, float))}
            for name, values in results["results"].items()}
