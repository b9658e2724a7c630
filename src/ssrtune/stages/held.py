"""The models the stages of one request to a run share: the evaluated model, which answers every suite of its
evaluation and scores its benchmarks, and the judges of those answers, each built once however many suites it
decides. Each is built on first use and released when the stage asked for is done (`Run.__call__`), or before the
other kind is built: an evaluated model and a judge's model (two vLLM engines) don't fit one GPU together."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ssrtune.config.judges import JudgeConfig
from ssrtune.inference.lm import LM
from ssrtune.judges.base import Judge
from ssrtune.judges.factory import build_judge, judge_fingerprint


class Held:
    """What the run holds: one evaluated model (by the name of the model it is), or the judges built since it was
    released (by their settings' fingerprint); never both."""

    def __init__(self):
        self._stack = contextlib.ExitStack()
        self._model: tuple[str, LM] | None = None
        self._judges: dict[str, Judge] = {}

    def lm(self, name: str, build: Callable[[], LM]) -> LM:
        """The evaluated model `name`, built on first use; whatever else is held is released first."""
        if self._model is None or self._model[0] != name:
            self.release()
            self._model = name, self._stack.enter_context(build())
        return self._model[1]

    def judge(self, spec: JudgeConfig) -> Judge:
        """The judge of `spec`, built once (an llm judge loads its model on first use); a held evaluated model is
        released first."""
        if self._model is not None:
            self.release()
        key = judge_fingerprint(spec)
        if key not in self._judges:
            self._judges[key] = self._stack.enter_context(build_judge(spec))
        return self._judges[key]

    def release(self) -> None:
        """Release everything held (nothing when nothing is)."""
        self._model, self._judges = None, {}
        self._stack.close()
