"""Plan kinds: every run, a strategy's or a lab's, takes the same road.

`jobs.submit(plan)` -> `run_plan(plan, ...)` -> the kind's runner emits events -> the run store ->
the pages. A kind names its runner (the same signature as `tlcore.train.loop.train`), checks its
own `Plan.options`, and declares the result schemas its `LabResult` events use, so Compare and
Results can read any kind's results without knowing which lab made them.

A registry at the bottom of the engine: it imports nothing above it. Each kind registers itself at
the end of its own module (`train` in tlcore.train.loop, each lab in tlcore.labs.*), and the one
module that knows every kind, `tlcore.labs`, is what the entry points import and hand to the queue.
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
    # LabResult schemas it emits (tlcore.train.events); the last is its summary, one row per arm, group or
    # source: what the Results and Compare pages tabulate for any lab run.
    results: tuple[str, ...] = ()
    # What one summary row is called ("arm", "cut", ...): a lab's progress line counts what it ran in these,
    # since labs emit no EpochEnded. A kind without a summary (a training run) counts epochs.
    unit: str = ""
    # The network a run of this kind trains, in words, for lists of runs (CLI, Teacher page): a lab whose
    # plan's `model` and `strategy` are placeholders says what it really trains. None: the plan's model.
    network: Callable[[Any], str] | None = None
    # What the host's limits (tlcore.limits) count. `epochs(plan)`: (passes over the data, the field or
    # option that sets them), or None for a kind without epochs (plan.epochs is then not read, nor limited).
    # `train_images(plan, data)`: a limits.TrainImages, what a run really trains on and which of the kind's
    # options changes it; `data()` loads the plan's dataset (cached). None: the plan's training split.
    epochs: Callable[[Any], tuple[int, str]] | None = lambda plan: (plan.epochs, "epochs")
    train_images: Callable[[Any, Callable[[], Any]], Any] | None = None


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"plan kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        known = ", ".join(sorted(KINDS)) or "none registered yet (import tlcore.labs)"
        raise PlanError("kind", f"unknown plan kind {name!r}; choose one of {known}")
    return KINDS[name]


def run_plan(plan, emit, should_stop: Callable[[], bool] = lambda: False, artifact_dir: Path | None = None) -> Any:
    """Execute a plan with its kind's runner (the kind's module has registered it)."""
    return kind_of(plan.kind).run(plan, emit, should_stop, artifact_dir)
