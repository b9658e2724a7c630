"""lm-evaluation-harness (`evaluate.retention.harness: lm-eval`) on the model an engine hands it (`LM.harness_model`),
for machines that reach the harness's data."""

from __future__ import annotations

from ssrtune.extras import import_extra
from ssrtune.inference.lm import LM


def harness_results(lm: LM, tasks: list[str], limit: int | None, batch_size: int) -> dict:
    """The harness's numeric results per task, on the model `lm` holds (already loaded and placed)."""
    lm_eval = import_extra("lm_eval", "lm-eval", "evaluate.retention.harness=lm-eval")
    results = lm_eval.simple_evaluate(model=lm.harness_model(batch_size), tasks=tasks, limit=limit, log_samples=False)
    return {name: {k: v for k, v in values.items() if isinstance(v, (int, float))}
            for name, values in results["results"].items()}
