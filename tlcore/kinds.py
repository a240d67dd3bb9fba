"""Plan kinds: every run, a strategy's or a lab's, takes the same road.

`jobs.submit(plan)` -> `run_plan(plan, ...)` -> the kind's runner emits events -> the run store ->
the pages. A kind names its runner (the same signature as `tlcore.train.loop.train`), checks its
own `Plan.options`, and declares the result schemas its `LabResult` events use, so Compare and
Results can read any kind's results without knowing which lab made them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import PlanError

Runner = Callable[..., Any]   # (plan, emit, should_stop, artifact_dir) -> anything; emits exactly one RunEnded


def _no_options(plan) -> None:
    if plan.options:
        raise PlanError("options", f"the {plan.kind} kind takes no options (got {', '.join(sorted(plan.options))})")


@dataclass(frozen=True)
class Kind:
    name: str
    title: str                                        # what people call it: "Training run", "Linear probe", ...
    run: Runner
    validate: Callable[[Any], None] = _no_options     # raises PlanError("options.x", ...) for bad settings
    results: tuple[str, ...] = ()                     # LabResult schemas it emits (tlcore.train.events)


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"plan kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def _load_all() -> None:
    """Labs register their kinds when imported; importing them here keeps `KINDS` complete for
    whoever asks first (a plan being validated, the job queue, a page)."""
    from . import labs  # noqa: F401


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        _load_all()
    if name not in KINDS:
        raise PlanError("kind", f"unknown plan kind {name!r}; choose one of {', '.join(sorted(KINDS))}")
    return KINDS[name]


def run_plan(plan, emit, should_stop: Callable[[], bool] = lambda: False, artifact_dir: Path | None = None) -> Any:
    """Execute any plan with its kind's runner (what the job queue's workers call)."""
    return kind_of(plan.kind).run(plan, emit, should_stop, artifact_dir)


def _train(plan, emit, should_stop, artifact_dir):
    from .train.loop import train
    return train(plan, emit, should_stop, artifact_dir)


register_kind(Kind("train", "Training run", _train))
