"""The code for this plan: the few lines that run the same plan from Python (a notebook) or the shell,
as the Keras guides end with the code of what they showed. Pure functions of a Plan.

Only the fields that differ from the defaults are written, so the code reads as the choices made. An
upload's server-side path is never written: the code names the file by its own name, for the reader to
put beside the notebook."""
from __future__ import annotations

import dataclasses
import shlex

from .train.plan import Plan

_NOT_WRITTEN = ("kind", "options")   # a training plan's; a lab's page builds its own plans


def _changed(plan: Plan) -> dict:
    default = Plan().to_dict()
    out = {k: v for k, v in plan.to_dict().items() if v != default[k] and k not in _NOT_WRITTEN}
    if plan.dataset == "folder":   # the person's own file, by its name, not where the server keeps it
        out["dataset_path"] = plan.dataset_name or "my_images.zip"
    out["image_size"] = plan.image_size   # its default depends on the machine: always written
    return out


def python_code(plan: Plan) -> str:
    """Python that trains the same plan with tlcore and keeps the trained network."""
    if plan.kind != "train":
        raise ValueError("only a training plan has code of its own here; a lab's page builds its plans")
    fields = _changed(plan)
    args = "".join(f"\n    {k}={v!r}," for k, v in fields.items())
    note = ("\n# dataset_path: your zip (one folder per class), beside this notebook"
            if plan.dataset == "folder" else "")
    return (f"from tlcore.cli import Progress\nfrom tlcore.train.loop import train\nfrom tlcore.train.plan import Plan\n{note}\n"
            f"plan = Plan({args}\n)\n"
            "net = train(plan, Progress())   # a progress bar; returns the trained network (None for pixel_svm)\n")


def cli_command(plan: Plan) -> str:
    """The same plan as one `python -m tlcore train` command line."""
    if plan.kind != "train":
        raise ValueError("only a training plan has a command line here")
    words = ["python", "-m", "tlcore", "train"]
    bools = {f.name for f in dataclasses.fields(Plan) if isinstance(f.default, bool)}
    for name, value in _changed(plan).items():
        flag = "--" + name.replace("_", "-")
        if name in bools:
            words.append(flag if value else "--no-" + flag[2:])
        elif value is None:
            continue
        else:
            words += [flag, str(value)]
    return shlex.join(words)
