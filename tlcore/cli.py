"""What every subcommand of `python -m tlcore` that runs a plan shares: a lab's `Command`, the
progress bar on stderr, Ctrl-C as a clean stop, and `run_plan_here` (check the data and the host's
limits, record the run, keep its heartbeat, print one JSON line). The labs declare their commands
here; `tlcore.__main__` only parses and dispatches."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import re
import signal
import sys
import threading
import typing
from dataclasses import dataclass
from typing import Any, Callable

from .jobs.worker import Heartbeat
from .kinds import run_plan
from .limits import Limits
from .runs import RunStore
from .train.events import EpochEnded, Phase, RunEnded, Step
from .train.plan import CPU_IMAGE_SIZE, Plan


@dataclass(frozen=True)
class Command:
    """A lab's subcommand: `add_arguments(parser)` declares its options, `run(args)` builds its plan,
    runs it with `run_plan_here` and returns the exit code."""
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


# Help for the plan fields whose line in plan.py has no comment (a field never has both: see tests).
_HELP = {
    "dataset": "dataset name from `python -m tlcore datasets`; to train on your own images use "
               "--dataset folder --dataset-path my_images.zip (a zip or directory with one folder per class)",
    "model": "the CNN, from `python -m tlcore models`",
    "strategy": "what to transfer: freeze the backbone, fine-tune the top groups or everything, unfreeze "
                "gradually, train from scratch, or an SVM on raw pixels",
    "head": "the new layers: linear or mlp train with the network; logreg and linear_svm are fitted by "
            "scikit-learn on frozen features",
    "epochs": "passes over the training images",
    "batch_size": "images per training step",
    "optimizer": "how the weights are updated",
    "schedule": "how the learning rate changes over the run (stlr: slanted triangular)",
    "weight_decay": "decoupled weight decay (AdamW) or L2 penalty (SGD)",
    "seed": "seed for the split, the sampling and the new weights (0 to 4294967295)",
    "device": "where to train: auto takes a CUDA GPU, then an Apple GPU, then the CPU",
}
def _field_comments() -> dict[str, str]:
    """Each Plan field's trailing comment in plan.py: the one place its meaning is written."""
    fields = {f.name for f in dataclasses.fields(Plan)}
    try:
        source = inspect.getsource(Plan)
    except (OSError, TypeError):   # no source shipped: the options still work, with less help
        return {}
    found = (re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m and m.group(1) in fields}


def _help(name: str, comments: dict[str, str], default: Any) -> str:
    text = comments.get(name) or _HELP.get(name, name.replace("_", " "))
    # By identity: 1 == True and 0.0 == False, so a lookup keyed by True/False called 1.0 "on".
    shown = ("unset" if default is None else ("on" if default else "off") if isinstance(default, bool)
             else "none" if default == "" else default)
    return f"{text} (default: {shown})".replace("%", "%%")


NOT_OPTIONS = ("kind", "options")   # each subcommand is one plan kind; a lab's subcommand has its own options


def plan_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(Plan)
    comments = _field_comments()
    for f in dataclasses.fields(Plan):
        if f.name in NOT_OPTIONS:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        if f.name == "image_size":   # the dashboard's default for this machine, filled in after parsing
            parser.add_argument(flag, dest=f.name, type=int, default=None, metavar="PX",
                                help=f"side in px fed to the model (default: {CPU_IMAGE_SIZE} on a CPU, the model's "
                                     "own size on a GPU; 0: the model's own size)")
        elif hint is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=_help(f.name, comments, f.default))
        elif choices:
            parser.add_argument(flag, dest=f.name, choices=choices, default=f.default,
                                help=_help(f.name, comments, f.default))
        else:
            base = next((t for t in (int, float, str) if t in (hint, *typing.get_args(hint))), str)
            parser.add_argument(flag, dest=f.name, type=base, default=f.default, metavar=base.__name__.upper(),
                                help=_help(f.name, comments, f.default))


class Progress:
    """A one-line progress bar on stderr, fed by engine events."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Any) -> None:
        if isinstance(event, Phase) and event.total:
            self._bar(f"{event.name}{' (cached)' if event.cache_hit else ''}", event.done / event.total, "")
        elif isinstance(event, Step):
            self._bar(f"epoch {event.epoch + 1}", (event.step + 1) / event.total_steps,
                      f"loss {event.loss:.3f}  {event.images_per_s:,.0f} img/s")
        elif isinstance(event, EpochEnded):
            self.stream.write(f"\repoch {event.epoch + 1}: train loss {event.train_loss:.4f}  val loss "
                              f"{event.val_loss:.4f}  val acc {event.val_acc:.3f}  macro F1 {event.macro_f1:.3f}"
                              f"  ({event.seconds:.1f}s)\x1b[K\n")
        elif isinstance(event, RunEnded):
            self.stream.write(f"\r{event.status}{': ' + event.message if event.message else ''}\x1b[K\n")
        self.stream.flush()

    def _bar(self, label: str, frac: float, extra: str) -> None:
        filled = int(30 * min(max(frac, 0.0), 1.0))
        self.stream.write(f"\r{label:<12} [{'#' * filled}{'.' * (30 - filled)}] {100 * frac:5.1f}%  {extra}\x1b[K")


class Parser(argparse.ArgumentParser):
    """Bad input ends in one line, like every other error here, not argparse's usage block."""

    def error(self, message: str) -> typing.NoReturn:
        # What was typed is echoed: shown escaped, so a control character cannot break the one line.
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def _ctrl_c_stops(stop: threading.Event, stream=sys.stderr):
    """First Ctrl-C: stop after the current step, keeping what was done. Second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        stream.write("\nstopping after this step (Ctrl-C again to abort)\n")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _checked_data(plan: Any) -> Any:
    """The plan's dataset, loaded (it stays cached for the run) and checked like the dashboard checks
    it: a missing path, a bad archive, a dataset that cannot be fetched offline all end here, in one
    line, before a run is recorded. What was skipped while reading it is said on stderr."""
    from . import downloads
    from .data import load_dataset

    progress = Progress()

    def downloading(done: int, total: int | None) -> None:
        progress(Phase("download", done, total or 0))
    with downloads.reporting(downloading):
        data = load_dataset(plan.dataset, image_size=plan.resolved_image_size(), per_class=plan.per_class,
                            imbalance=plan.imbalance, seed=plan.seed, path=plan.dataset_path or None,
                            display_name=plan.dataset_name or None)
    if data.notes:
        said = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in data.notes.items())
        sys.stderr.write(f"note: while reading {plan.dataset_name or plan.dataset_path or plan.dataset}: {said}\n")
    return data


def run_plan_here(plan: Any, summary: Callable[[Any, dict[str, int]], dict[str, Any]]) -> int:
    """What every subcommand that runs a plan does (train and each lab's): check the data and the
    host's limits, record the run, show a progress bar, keep its heartbeat, stop cleanly on Ctrl-C,
    and end with one JSON line built by `summary(run, notes)`. Returns the exit code."""
    data = _checked_data(plan)
    Limits.from_env().check(plan, data)   # the host's limits hold for the command line as for the dashboard
    store = RunStore()
    run_id = store.create(plan, owner="cli")
    progress = Progress()

    def sink(event: Any) -> None:
        store.append(run_id, event)
        progress(event)

    stop = threading.Event()
    try:
        # The heartbeat tells servers sharing the store that this run lives; a `kill -9` stops it and
        # the next sweep ends the run as interrupted instead of leaving it "running" for ever.
        with _ctrl_c_stops(stop), Heartbeat(store, run_id):
            run_plan(plan, sink, stop.is_set, store.artifact_dir(run_id))
    except KeyboardInterrupt:   # a second Ctrl-C: the run has already recorded that it was aborted
        print("\nerror: aborted from the keyboard", file=sys.stderr)
        return 130
    run = store.load(run_id)
    print(json.dumps(summary(run, data.notes)))
    if stop.is_set():
        return 130   # the shell's code for "ended by Ctrl-C", after a clean stop
    return 0 if run.status == "finished" else 1
