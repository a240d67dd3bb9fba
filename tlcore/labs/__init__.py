"""The labs: each module registers one or more plan kinds (tlcore.kinds) built from the engine's
phases (tlcore.train.phases), and may add a subcommand to `python -m tlcore` (tlcore.cli).

This package is the one place that knows every kind: importing it registers them all (the
training run's too), and its `run_plan` is what the entry points (the dashboard's job runner, the
CLI, a worker process, a Ray task) hand to the queue."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .. import kinds
from ..train import loop  # noqa: F401  (registers the "train" kind)

from . import similarity  # noqa: E402,F401  (each lab registers its kind and command on import)
from . import multitask  # noqa: E402,F401
from . import lr_find  # noqa: E402,F401
from . import deploy  # noqa: E402,F401
from . import dann  # noqa: E402,F401  (domain adaptation lab)
from . import negative_transfer  # noqa: E402,F401  (negative transfer lab)
from . import probe  # noqa: E402,F401
from . import probe_finetune  # noqa: E402,F401  (fine-tune from every cut)
from . import depth  # noqa: E402,F401  (why deep networks were hard to train)
from . import few_shot  # noqa: E402,F401  (one-shot and few-shot lab)
from . import zero_shot  # noqa: E402,F401  (zero-shot lab: attributes)
from . import forgetting  # noqa: E402,F401  (catastrophic forgetting lab)


def run_plan(plan, emit, should_stop: Callable[[], bool] = lambda: False, artifact_dir: Path | None = None) -> Any:
    """Execute any plan with its kind's runner: what the job queue's workers are handed."""
    return kinds.run_plan(plan, emit, should_stop, artifact_dir)
