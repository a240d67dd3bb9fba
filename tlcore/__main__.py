"""Command line: `python -m tlcore {datasets,models,settings,train,runs}`.

`train` takes every plan field as an option (tlcore.cli.plan_options: its help comes from the field's comment in
tlcore/train/plan.py, or from tlcore.cli._HELP), checks the plan, the
dataset and this host's limits before anything runs, shows a progress bar on stderr and ends by
printing one JSON line on stdout. Bad input exits 2 with a one-line error; a failed run exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

from .cli import COMMANDS, Parser, Progress, plan_options, run_plan_here
from .errors import TLCoreError

_EPILOG = """examples:
  python -m tlcore train --dataset digits --strategy gradual_unfreeze --epochs 4
  python -m tlcore train --dataset folder --dataset-path my_images.zip --epochs 3
      (my_images.zip: cats/1.jpg, dogs/1.jpg, ... or train/<class>/... and val/<class>/...)"""


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


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
    bar = Progress()
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


def _run_rows(full: bool) -> list[dict[str, Any]]:
    """Readable cells by default (tlcore.runlist.row); with --json every stored field. Never the owner."""
    from . import labs  # noqa: F401  (each lab's kind says what network its runs train)
    from .runlist import record, row
    from .runs import RunStore
    store = RunStore()
    store.sweep()   # runs whose process was killed show as interrupted, not as running for ever
    return [(record if full else row)(s) for s in store.list()]


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m tlcore", description="Transfer Learning Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the datasets and whether each works offline now")
    sub.add_parser("models", help="list the model zoo and whether each model's weights are here")
    sub.add_parser("settings", help="list the TLCORE_* environment settings a host can use")
    plan_options(sub.add_parser("train", help="run one plan and print a JSON line", epilog=_EPILOG,
                                 description="Run one plan: every option is a plan field.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    runs = sub.add_parser("runs", help="list stored runs (created: local time)")
    runs.add_argument("--json", action="store_true", help="every stored field of each run, as a JSON list")
    pre = sub.add_parser("prefetch", help="download datasets and model weights into their caches before a class",
                         description="Fetch each named dataset or model now (names as `datasets` and `models` list "
                                     "them), with a progress bar, so no student waits on a download.")
    pre.add_argument("names", nargs="+", metavar="NAME", help="a dataset or a model name")
    from . import labs  # noqa: F401  (every lab registers its kind and its subcommand)
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
            rows = _run_rows(args.json)
            print(json.dumps(rows, indent=1) if args.json else _table(rows))
        elif args.command == "train":
            return _cmd_train(args)
        elif args.command == "prefetch":
            return _cmd_prefetch(args)
        else:
            command = next(c for c in COMMANDS if c.name == args.command)
            return command.run(args)
    except TLCoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
