"""Command line: `python -m tlcore {datasets,models,train,runs}`.

`train` takes every plan field as an option, shows a progress bar on stderr and ends by printing
one JSON line on stdout; bad input exits non-zero with a one-line error.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
import typing
from typing import Any, Sequence

from .errors import TLCoreError


def _plan_options(parser: argparse.ArgumentParser) -> None:
    from .train.plan import CPU_IMAGE_SIZE, Plan

    hints = typing.get_type_hints(Plan)
    for f in dataclasses.fields(Plan):
        if f.name in ("kind", "options"):   # each subcommand is one kind; labs take their own options
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        if f.name == "image_size":   # the dashboard's default for this machine, filled in after parsing
            parser.add_argument(flag, dest=f.name, type=int, default=None, metavar="PX",
                                help=f"side in px fed to the model (default: {CPU_IMAGE_SIZE} on a CPU, the model's "
                                     "own size on a GPU; 0: the model's own size)")
        elif hint is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        elif choices:
            parser.add_argument(flag, dest=f.name, choices=choices, default=f.default)
        else:
            base = next((t for t in (int, float, str) if t in (hint, *typing.get_args(hint))), str)
            parser.add_argument(flag, dest=f.name, type=base, default=f.default, metavar=base.__name__.upper())


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

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream

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


def _cmd_train(args: argparse.Namespace) -> int:
    from .jobs.worker import Heartbeat
    from .runs import RunStore
    from .train.loop import train
    from .train.plan import Plan, default_image_size

    fields = {f.name for f in dataclasses.fields(Plan)}
    options = {k: v for k, v in vars(args).items() if k in fields}
    if options["image_size"] is None:
        options["image_size"] = default_image_size(options["device"])
    plan = Plan(**options)
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
            train(plan, sink, stop.is_set, artifact_dir=store.artifact_dir(run_id))
    except KeyboardInterrupt:   # a second Ctrl-C: the run has already recorded that it was aborted
        print("\nerror: aborted from the keyboard", file=sys.stderr)
        return 130
    run = store.load(run_id)
    last = run.epochs[-1] if run.epochs else None
    print(json.dumps({
        "run_id": run_id, "status": run.status, "strategy": plan.strategy, "model": plan.model,
        "dataset": plan.dataset, "val_acc": last.val_acc if last else None,
        "macro_f1": last.macro_f1 if last else None,
        "seconds": round(run.ended.seconds, 3) if run.ended else None,
        "images_per_s": round(sum(e.images_per_s for e in run.epochs) / len(run.epochs), 1) if run.epochs else None,
        "message": run.message,
    }))
    if stop.is_set():
        return 130   # the shell's code for "ended by Ctrl-C", after a clean stop
    return 0 if run.status == "finished" else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m tlcore", description="Transfer Learning Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the datasets and whether each works offline now")
    sub.add_parser("models", help="list the model zoo and whether each model's weights are here")
    _plan_options(sub.add_parser("train", help="run one plan and print a JSON line"))
    sub.add_parser("runs", help="list stored runs")
    args = parser.parse_args(argv)
    try:
        if args.command == "datasets":
            from .data import dataset_rows
            print(_table(dataset_rows()))
        elif args.command == "models":
            from .models import model_rows
            print(_table(model_rows()))
        elif args.command == "runs":
            from .runs import RunStore
            store = RunStore()
            store.sweep()   # runs whose process was killed show as interrupted, not running
            print(_table([dataclasses.asdict(s) for s in store.list()]))
        elif args.command == "train":
            return _cmd_train(args)
    except TLCoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
