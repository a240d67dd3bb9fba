"""The labs: each module registers one or more plan kinds (tlcore.kinds) built from the engine's
phases (tlcore.train.phases), and may add a subcommand to `python -m tlcore`. Importing this
package registers them all."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    """A lab's subcommand: `add_arguments(parser)` declares its options, `run(args)` builds its plan,
    runs it with `tlcore.__main__.run_plan_here` (progress bar, store, heartbeat, one JSON line) and
    returns the exit code."""
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


COMMANDS: list[Command] = []


def register_command(command: Command) -> Command:
    if any(c.name == command.name for c in COMMANDS):
        raise ValueError(f"subcommand {command.name!r} is already registered")
    COMMANDS.append(command)
    return command


from . import similarity  # noqa: E402,F401  (each lab registers its kind and command on import)
from . import multitask  # noqa: E402,F401
from . import lr_find  # noqa: E402,F401
from . import deploy  # noqa: E402,F401
from . import dann  # noqa: E402,F401  (domain adaptation lab)
from . import negative_transfer  # noqa: E402,F401  (negative transfer lab)
from . import probe  # noqa: E402,F401
