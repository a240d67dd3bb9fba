"""Command line: `python -m tlcore {datasets,models,settings,train,runs}`.

`train` takes every plan field as an option (its help comes from the field's comment in
tlcore/train/plan.py, or from _HELP below for the fields that have none), checks the plan, the
dataset and this host's limits before anything runs, shows a progress bar on stderr and ends by
printing one JSON line on stdout. Bad input exits 2 with a one-line error; a failed run exits 1.
"""
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
import time
import typing
from typing import Any, Callable, Sequence

from .errors import TLCoreError

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
_EPILOG = """examples:
  python -m tlcore train --dataset digits --strategy gradual_unfreeze --epochs 4
  python -m tlcore train --dataset folder --dataset-path my_images.zip --epochs 3
      (my_images.zip: cats/1.jpg, dogs/1.jpg, ... or train/<class>/... and val/<class>/...)"""


def _field_comments() -> dict[str, str]:
    """Each Plan field's trailing comment in plan.py: the one place its meaning is written."""
    from .train import plan as plan_module

    fields = {f.name for f in dataclasses.fields(plan_module.Plan)}
    try:
        source = inspect.getsource(plan_module.Plan)
    except (OSError, TypeError):   # no source shipped: the options still work, with less help
        return {}
    found = (re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m and m.group(1) in fields}


def _help(name: str, comments: dict[str, str], default: Any) -> str:
    text = comments.get(name) or _HELP.get(name, name.replace("_", " "))
    shown = {None: "unset", True: "on", False: "off", "": "none"}.get(default, default)
    return f"{text} (default: {shown})".replace("%", "%%")


NOT_OPTIONS = ("kind", "options")   # each subcommand is one plan kind; a lab's subcommand has its own options


def _plan_options(parser: argparse.ArgumentParser) -> None:
    from .train.plan import CPU_IMAGE_SIZE, Plan

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


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


class _Progress:
    """A one-line progress bar on stderr, fed by engine events."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Any) -> None:
        from .train.events import EpochEnded, Phase, RunEnded, Step

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


class _Parser(argparse.ArgumentParser):
    """Bad input ends in one line, like every other error here, not argparse's usage block."""

    def error(self, message: str) -> typing.NoReturn:
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

    progress = _Progress()

    def downloading(done: int, total: int | None) -> None:
        from .train.events import Phase
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
    from .jobs.worker import Heartbeat
    from .kinds import run_plan
    from .limits import Limits
    from .runs import RunStore

    data = _checked_data(plan)
    Limits.from_env().check(plan, data)   # the host's limits hold for the command line as for the dashboard
    store = RunStore()
    run_id = store.create(plan, owner="cli")
    progress = _Progress()

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


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.plan import Plan, default_image_size

    fields = {f.name for f in dataclasses.fields(Plan)}
    options = {k: v for k, v in vars(args).items() if k in fields}
    if options["image_size"] is None:
        options["image_size"] = default_image_size(options["device"])
    plan = Plan(**options)
    return run_plan_here(plan, lambda run, notes: _result(run, plan, notes))


def _cmd_prefetch(args: argparse.Namespace) -> int:
    from .prefetch import prefetch
    bar = _Progress()
    done = prefetch(args.names, lambda name, got, total: bar._bar(name, got / total if total else 0.0,
                                                                  f"{got / 2**20:,.1f} MB"))
    sys.stderr.write("\r\x1b[K")
    print(_table([dataclasses.asdict(f) for f in done]))
    return 0 if all(f.status != "failed" for f in done) else 1


def _result(run: Any, plan: Any, notes: dict[str, int]) -> dict[str, Any]:
    """The JSON line `train` ends with."""
    last = run.epochs[-1] if run.epochs else None
    return {
        "run_id": run.id, "status": run.status, "strategy": plan.strategy, "model": plan.model,
        "dataset": plan.dataset, "val_acc": last.val_acc if last else None,
        "macro_f1": last.macro_f1 if last else None,
        "seconds": round(run.ended.seconds, 3) if run.ended else None,
        "images_per_s": round(sum(e.images_per_s for e in run.epochs) / len(run.epochs), 1) if run.epochs else None,
        "notes": notes, "message": run.message,
    }


def _local_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _run_rows() -> list[dict[str, Any]]:
    from .runs import RunStore
    store = RunStore()
    store.sweep()   # runs whose process was killed show as interrupted, not as running for ever
    return [{**dataclasses.asdict(s), "created": _local_time(s.created)} for s in store.list()]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tlcore", description="Transfer Learning Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the datasets and whether each works offline now")
    sub.add_parser("models", help="list the model zoo and whether each model's weights are here")
    sub.add_parser("settings", help="list the TLCORE_* environment settings a host can use")
    _plan_options(sub.add_parser("train", help="run one plan and print a JSON line", epilog=_EPILOG,
                                 description="Run one plan: every option is a plan field.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    sub.add_parser("runs", help="list stored runs (created: local time)")
    pre = sub.add_parser("prefetch", help="download datasets and model weights into their caches before a class",
                         description="Fetch each named dataset or model now (names as `datasets` and `models` list "
                                     "them), with a progress bar, so no student waits on a download.")
    pre.add_argument("names", nargs="+", metavar="NAME", help="a dataset or a model name")
    from .labs import COMMANDS
    for command in COMMANDS:   # each lab's subcommand: its options, then the plan it runs
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.description))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from . import settings
        settings.check_all()   # a bad TLCORE_* value fails here, naming it, not halfway through a run
        if args.command == "datasets":
            from .data import dataset_rows
            print(_table(dataset_rows()))
        elif args.command == "models":
            from .models import model_rows
            print(_table(model_rows()))
        elif args.command == "settings":
            print(_table(settings.rows()))
        elif args.command == "runs":
            print(_table(_run_rows()))
        elif args.command == "train":
            return _cmd_train(args)
        elif args.command == "prefetch":
            return _cmd_prefetch(args)
        else:
            from .labs import COMMANDS
            command = next(c for c in COMMANDS if c.name == args.command)
            return command.run(args)
    except TLCoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
