"""Judges: does a candidate answer do as well as the gold one? `base` (the interface and verdicts), `rules` (rule
judges), `llm` (a language model as judge), `config` (one settings class per kind) and `factory` (settings -> judge).

On their own: `build({"kind": "numeric"}).judge([JudgeInput(id, query, context, gold, candidate)])`."""

from __future__ import annotations

import ssrtune.lazy as _lazy

if _lazy.TYPE_CHECKING:
    from ssrtune.judges.base import Judge, JudgeInput, Judgment
    from ssrtune.config.judges import JudgeConfig, parse_judge
    from ssrtune.judges.factory import build

__all__ = ["build", "parse_judge", "Judge", "JudgeConfig", "JudgeInput", "Judgment"]
__getattr__, __dir__ = _lazy.lazy_exports(__name__, {
    "build": "ssrtune.judges.factory", "parse_judge": "ssrtune.config.judges", "JudgeConfig": "ssrtune.config.judges",
    "Judge": "ssrtune.judges.base", "JudgeInput": "ssrtune.judges.base", "Judgment": "ssrtune.judges.base"})
