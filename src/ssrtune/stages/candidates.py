"""Which stage makes a candidate source's answers: each kind of source (`methods.Source`) names its stage here,
when that stage's module is imported (`@makes(OwnAnswers)`). The judge stage judges any of them, and a method's
targets are chosen from their verdicts (`stages.select`)."""

from __future__ import annotations

from collections.abc import Callable

from ssrtune.methods import Source
from ssrtune.stages.base import Stage

MAKERS: dict[type[Source], Callable[[Source], Stage]] = {}


def makes(kind: type[Source]) -> Callable[[type[Stage]], type[Stage]]:
    """A class decorator for the stage that makes the answers of sources of `kind` (built from the source)."""
    def register(stage: type[Stage]) -> type[Stage]:
        MAKERS[kind] = stage.for_source
        return stage

    return register


def candidate_stage(source: Source) -> Stage:
    """The stage that makes `source`'s answers."""
    if type(source) not in MAKERS:
        raise KeyError(f"no stage makes the candidates of {source!r}; its stage module registers one with @makes")
    return MAKERS[type(source)](source)
