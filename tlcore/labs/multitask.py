"""Multi-task learning lab: one network with a shared trunk learns two tasks at once, side by side
with two single-task networks of the same trunk, on images that carry two labels (tlcore.data.pairs).

The lecture notes say multi-task learning makes sense when (1) the tasks can share lower-level
features, (2) each task has a similar amount of data, and (3) the network is big enough for all
of them. Each has a control here: task B related or not (right digit vs background brightness),
the share of task B's labels (unlabelled examples are masked out of B's loss), the trunk's width.

Every arm takes the same number of optimiser steps per epoch, so "joint vs single" compares
equal training budgets: the single task-B network cycles over its few labelled pairs as often as
that takes. Accuracy is measured on every validation pair, all of which carry both labels.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..data.pairs import PAIR_SOURCES, TwoTaskSplits, is_two_task, load_two_task
from ..device import pick
from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train import rng
from ..train.events import LabResult, Metrics, Phase, RunStarted, Step, register_schema
from ..train.schedules import multiplier
from ..train.scope import Failed, RunScope, check_stop
from ..cli import Command, register_command
from .multitask_net import TASKS, MultiTaskNet, multitask_loss, n_params, to_input

KIND = "multitask"
WEIGHTINGS = ("fixed", "uncertainty")
DEFAULTS: dict[str, Any] = {"related": True, "b_labels": 1.0, "width": 16, "weighting": "fixed",
                            "w_a": 1.0, "w_b": 1.0, "pairs": 2000}
WIDTHS = (1, 2, 4, 8, 16, 32)              # what the page offers; any 1..64 is valid
MAX_WIDTH = 64
PAIRS_RANGE = (100, 20_000)
EVAL_BATCH = 512
STEP_EVENT_INTERVAL_S = 0.25

EPOCH_SCHEMA = register_schema("multitask_epoch", {"arm": str, "task": str, "epoch": int, "train_loss": float,
                                                   "val_acc": float})
ARM_SCHEMA = register_schema("multitask_arm", {"arm": str, "acc_A": float, "acc_B": float, "params": int,
                                               "seconds": float})


# --- options ---------------------------------------------------------------------------------------
def options(plan) -> dict[str, Any]:
    """The plan's options with the defaults filled in (the validator has checked them)."""
    return {**DEFAULTS, **plan.options}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"options.{name}", f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise PlanError(f"options.{name}", f"must be a finite number, not {value}")
    return float(value)


def validate(plan) -> None:
    unknown = sorted(set(plan.options) - set(DEFAULTS))
    if unknown:
        raise PlanError(f"options.{unknown[0]}", f"is not a multi-task option; use {', '.join(DEFAULTS)}")
    if not is_two_task(plan.dataset):
        raise PlanError("dataset", f"{plan.dataset!r} has one label per image and multi-task learning needs two; "
                                   f"choose one of {', '.join(PAIR_SOURCES)}")
    o = options(plan)
    if not isinstance(o["related"], bool):
        raise PlanError("options.related", "must be true (task B: the right digit) or false (the background)")
    share = _number("b_labels", o["b_labels"])
    if not 0 < share <= 1:
        raise PlanError("options.b_labels", f"is the share of task B's labels kept: above 0 and at most 1, not {share}")
    w_a, w_b = _number("w_a", o["w_a"]), _number("w_b", o["w_b"])
    if w_a < 0 or w_b < 0:
        raise PlanError("options.w_a" if w_a < 0 else "options.w_b", "a task's weight cannot be negative")
    if o["weighting"] not in WEIGHTINGS:
        raise PlanError("options.weighting", f"unknown weighting {o['weighting']!r}; choose one of {', '.join(WEIGHTINGS)}")
    if o["weighting"] == "fixed" and w_a == 0 and w_b == 0:
        raise PlanError("options.w_b", "with both weights at 0 the joint network would learn nothing")
    for name, lo, hi in (("width", 1, MAX_WIDTH), ("pairs", *PAIRS_RANGE)):
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise PlanError(f"options.{name}", f"must be a whole number from {lo} to {hi:,}, not {v!r}")


# --- the arms --------------------------------------------------------------------------------------
@dataclass
class Arm:
    """One network being trained: the joint one, or the single-task network of task A or of B."""
    name: str                    # "joint", "single_A", "single_B"
    net: MultiTaskNet
    opt: torch.optim.Optimizer
    pool: torch.Tensor           # training pairs it may draw a batch from
    gen: torch.Generator
    seconds: float = 0.0
    queue: torch.Tensor | None = None

    def batch(self, size: int) -> torch.Tensor:
        """The next batch of the pool, cycling through fresh permutations (a small pool repeats)."""
        out = []
        while size > 0:
            if self.queue is None or len(self.queue) == 0:
                self.queue = self.pool[torch.randperm(len(self.pool), generator=self.gen)]
            take, self.queue = self.queue[:size], self.queue[size:]
            out.append(take)
            size -= len(take)
        return torch.cat(out)


def labelled_b(n: int, share: float, seed: int) -> torch.Tensor:
    """Which training pairs keep their task-B label (bool [n]): a seeded sample of round(share*n), at least one."""
    k = max(1, round(share * n))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))[:k]] = True
    return keep


def build_net(width: int, classes: dict[str, int], uncertainty: bool, seed: int) -> MultiTaskNet:
    # Same seed for every arm: the joint and the single-task networks start from the same trunk.
    with rng.seeded(seed):
        return MultiTaskNet(width, classes, uncertainty)


def make_optimizer(net: MultiTaskNet, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = [{"params": list(net.trunk.parameters()) + list(net.heads.parameters()), "weight_decay": weight_decay}]
    if net.log_vars is not None:   # decaying s_i would pull every task's weight towards 1
        groups.append({"params": list(net.log_vars.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr)


def make_arms(plan, data: TwoTaskSplits, keep_b: torch.Tensor) -> list[Arm]:
    o = options(plan)
    n_cls = {"A": len(data.classes_a), "B": len(data.classes_b)}
    unc = o["weighting"] == "uncertainty"
    everything = torch.arange(len(data.train_a))
    specs = [("joint", n_cls, unc, everything), ("single_A", {"A": n_cls["A"]}, False, everything),
             ("single_B", {"B": n_cls["B"]}, False, torch.nonzero(keep_b).flatten())]
    arms = []
    for i, (name, classes, u, pool) in enumerate(specs):
        net = build_net(o["width"], classes, u, plan.seed)
        arms.append(Arm(name, net, make_optimizer(net, plan.lr, plan.weight_decay), pool,
                        rng.generator(plan.seed + i, rng.SHUFFLE)))
    return arms


def train_steps(arm: Arm, data: TwoTaskSplits, keep_b: torch.Tensor, weights: dict[str, float], plan, steps: int,
                step0: int, total: int, on_step: Callable[[int, float], None], should_stop: Callable[[], bool]) -> float:
    """`steps` optimiser steps of one arm; returns its mean training loss (over the steps that had one)."""
    net, bs = arm.net, min(plan.batch_size, len(data.train_a))
    net.train()
    losses = []
    t = time.perf_counter()
    for i in range(steps):
        check_stop(should_stop)
        idx = arm.batch(bs)
        scale = multiplier(plan.schedule, step0 + i, total, cut_frac=plan.cut_frac, ratio=plan.ratio,
                           warmup_frac=plan.warmup_frac)
        for g in arm.opt.param_groups:
            g["lr"] = plan.lr * scale
        logits = net(to_input(data.train_x[idx]))
        targets = {"A": data.train_a[idx], "B": data.train_b[idx]}
        masks = {"A": torch.ones(len(idx), dtype=torch.bool), "B": keep_b[idx]}
        loss, _ = multitask_loss(net, logits, targets, masks, weights)
        if loss is None:
            continue
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Failed(f"the {arm.name} network's loss became {value} at step {i + 1}: the learning rate "
                         f"({plan.lr:g}) is probably too high; try 10x lower")
        arm.opt.zero_grad(set_to_none=True)
        loss.backward()
        arm.opt.step()
        losses.append(value)
        on_step(step0 + i, value)
    arm.seconds += time.perf_counter() - t
    return sum(losses) / len(losses) if losses else float("nan")


@torch.no_grad()
def accuracy(net: MultiTaskNet, x: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    net.eval()
    hits = {t: 0 for t in net.tasks}
    for start in range(0, len(x), EVAL_BATCH):
        out = net(to_input(x[start:start + EVAL_BATCH]))
        for t in net.tasks:
            hits[t] += int((out[t].argmax(1) == labels[t][start:start + EVAL_BATCH]).sum())
    return {t: hits[t] / max(len(x), 1) for t in net.tasks}


# --- the run ---------------------------------------------------------------------------------------
def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        o = options(plan)
        policy = pick("cpu")   # the trunk is tiny: a GPU's launch overheads would cost more than its speed gives
        emit(Phase("data", 0, 1))
        data = load_two_task(plan.dataset, related=o["related"], train_pairs=o["pairs"], seed=plan.seed)
        emit(Phase("data", 1, 1))
        check_stop(should_stop)
        scope.keep(classes=data.classes_a)
        keep_b = labelled_b(len(data.train_a), o["b_labels"], plan.seed)
        arms = make_arms(plan, data, keep_b)
        joint, single = arms[0], arms[1:]
        spe = max(1, len(data.train_a) // min(plan.batch_size, len(data.train_a)))
        total = spe * plan.epochs * len(arms)
        emit(RunStarted(plan.to_dict(), policy.name, n_params(joint.net), 0, ("trunk",), len(data.train_a),
                        len(data.val_a), data.classes_a, dataset_name=data.name, steps_per_epoch=spe))
        weights = {"A": o["w_a"], "B": o["w_b"]}
        val = {"A": data.val_a, "B": data.val_b}
        t0, clock = scope.t0, {"last": 0.0, "done": 0}

        def on_step(epoch: int) -> Callable[[int, float], None]:
            def tell(_arm_step: int, loss: float) -> None:
                clock["done"] += 1
                now = time.perf_counter()
                if now - clock["last"] >= STEP_EVENT_INTERVAL_S or clock["done"] == total:
                    clock["last"] = now
                    emit(Step(epoch, clock["done"] - 1, total, spe * len(arms), loss, (plan.lr,),
                              clock["done"] * plan.batch_size / max(now - t0, 1e-9), now - t0))
            return tell

        final: dict[str, dict[str, float]] = {}
        for epoch in range(plan.epochs):
            for arm in arms:
                # Weights balance tasks inside one network: a single-task network's one loss is taken as it is.
                loss = train_steps(arm, data, keep_b, weights if arm is joint else {}, plan, spe, epoch * spe,
                                   spe * plan.epochs, on_step(epoch), should_stop)
                acc = accuracy(arm.net, data.val_x, val)
                final[arm.name] = acc
                for task, a in acc.items():
                    emit(LabResult(EPOCH_SCHEMA, {"arm": "joint" if arm is joint else "single", "task": task,
                                                  "epoch": epoch, "train_loss": loss, "val_acc": a}))
            scope.keep(extra={"multitask.pt": {a.name: {k: v.detach().clone() for k, v in a.net.state_dict().items()}
                                               for a in arms}})
        j, sa, sb = final["joint"], final["single_A"]["A"], final["single_B"]["B"]
        single_params = sum(n_params(a.net) for a in single)
        single_seconds = sum(a.seconds for a in single)
        emit(LabResult(ARM_SCHEMA, {"arm": "joint", "acc_A": j["A"], "acc_B": j["B"], "params": n_params(joint.net),
                                    "seconds": joint.seconds}))
        emit(LabResult(ARM_SCHEMA, {"arm": "single", "acc_A": sa, "acc_B": sb, "params": single_params,
                                    "seconds": single_seconds}))
        metrics = {"val_acc": (j["A"] + j["B"]) / 2, "joint_A": j["A"], "joint_B": j["B"], "single_A": sa,
                   "single_B": sb, "joint_params": n_params(joint.net), "single_params": single_params,
                   "joint_seconds": joint.seconds, "single_seconds": single_seconds, "b_labels": o["b_labels"]}
        if joint.net.log_vars is not None:
            metrics.update({f"s_{t}": float(joint.net.log_vars[t].detach()) for t in TASKS})
        emit(Metrics(metrics))


register_kind(Kind(KIND, "Multi-task comparison", run, validate=validate, results=(EPOCH_SCHEMA, ARM_SCHEMA), unit="arm"))


# --- reading a finished run ------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    joint: dict[str, float]      # {"A", "B", "params", "seconds"}
    single: dict[str, float]

    @classmethod
    def of(cls, results) -> "Outcome | None":
        rows = {r.values["arm"]: r.values for r in results if r.schema == ARM_SCHEMA}
        if set(rows) != {"joint", "single"}:
            return None
        def side(v):
            return {"A": v["acc_A"], "B": v["acc_B"], "params": v["params"], "seconds": v["seconds"]}
        return cls(side(rows["joint"]), side(rows["single"]))


MARGIN = 0.02   # accuracy differences below two points are read as "about the same"


def _compare(j: float, s: float) -> str:
    if j > s + MARGIN:
        return f"the joint network did better ({j:.3f} vs {s:.3f})"
    if j < s - MARGIN:
        return f"the joint network did worse ({j:.3f} vs {s:.3f})"
    return f"both did about the same ({j:.3f} vs {s:.3f})"


def findings(opts: dict[str, Any], out: Outcome) -> list[str]:
    """What one run showed, in plain sentences, against the notes' three conditions."""
    o = {**DEFAULTS, **opts}
    j, s = out.joint, out.single
    said = []
    what_b = "the right digit" if o["related"] else "the background's brightness"
    said.append(f"Task A (left digit): {_compare(j['A'], s['A'])}. Task B ({what_b}): {_compare(j['B'], s['B'])}.")
    gain_b, gain_a = j["B"] - s["B"], j["A"] - s["A"]
    if o["related"]:
        said.append("Shared features: both tasks read digits, so the strokes the trunk learns for one serve the other"
                    + (f"; here that helped task B by {gain_b * 100:.1f} points." if gain_b > MARGIN else
                       "; here sharing neither helped nor hurt much." if abs(gain_b) <= MARGIN else
                       f"; still, task B lost {-gain_b * 100:.1f} points."))
    else:
        said.append("Shared features: brightness needs nothing a digit reader learns, so sharing has little to give"
                    + (f", and task A lost {-gain_a * 100:.1f} points to the trunk it shared." if gain_a < -MARGIN else
                       f"; task B gained {gain_b * 100:.1f} points anyway." if gain_b > MARGIN else
                       "; as expected, neither task gained much."))
    share = o["b_labels"]
    if share >= 0.5:
        said.append(f"Similar amounts of data: task B kept {share:.0%} of its labels, so both tasks pull on the "
                    "trunk about equally.")
    else:
        said.append(f"Unequal amounts of data: task B kept only {share:.0%} of its labels. "
                    + ("The joint network let B borrow what A's many labels taught the trunk." if gain_b > MARGIN else
                       "B did not gain from A's labels here.")
                    + (" Task A, with most of the labels, paid nothing for it." if gain_a >= -MARGIN else
                       f" Task A lost {-gain_a * 100:.1f} points: B's loss, averaged over its few labelled pairs "
                       "in each batch, pulls the shared trunk as hard as A's, and its pull is noisy. "
                       "A lower weight for B shows the difference."))
    w = o["width"]
    worse = [t for t, g in (("A", gain_a), ("B", gain_b)) if g < -MARGIN]
    ratio = j["params"] / max(s["params"], 1)
    said.append(f"Network size: the trunk ends in {4 * w} features (width {w}); the joint network has "
                f"{int(j['params']):,} parameters against {int(s['params']):,} for the two single-task networks "
                f"({ratio:.0%})."
                + (size_verdict(worse, s, share)))
    return said


def size_verdict(worse: list[str], single: dict[str, float], share: float) -> str:
    if single["A"] < 0.5 and single["B"] < 0.5:
        return (f" Even a single-task network of this trunk does poorly (A {single['A']:.3f}, B {single['B']:.3f}): "
                "the trunk is too small for one task, let alone two.")
    if not worse:
        return " It was big enough to do both tasks without losing either."
    lost = f" Sharing that trunk cost task {' and '.join(worse)} accuracy"
    if share >= 0.5:
        return lost + ": a wider trunk may be needed to do well on both."
    return lost + ", but with B's labels this scarce, the unequal data above may be the cause rather than the size."


# --- the command line ------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digit_pairs", help=f"two-task images: {', '.join(PAIR_SOURCES)} "
                                                             "(default: digit_pairs)")
    p.add_argument("--b-labels", type=float, default=1.0, help="share of task B's labels kept, in (0, 1] (default: 1)")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training pairs (default: 5)")
    p.add_argument("--width", type=int, default=DEFAULTS["width"], help="trunk width (default: 16)")
    p.add_argument("--unrelated", action="store_true", help="task B: the background's brightness, not the right digit")
    p.add_argument("--weighting", choices=WEIGHTINGS, default="fixed", help="fixed weights, or learned uncertainty")
    p.add_argument("--w-a", type=float, default=1.0, help="task A's loss weight (fixed weighting)")
    p.add_argument("--w-b", type=float, default=1.0, help="task B's loss weight (fixed weighting)")
    p.add_argument("--pairs", type=int, default=DEFAULTS["pairs"], help="training pairs (default: 2000)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 0.003)")
    p.add_argument("--seed", type=int, default=0)


def plan_for(args: argparse.Namespace):
    from ..train.plan import Plan
    opts = {"related": not args.unrelated, "b_labels": args.b_labels, "width": args.width,
            "weighting": args.weighting, "w_a": args.w_a, "w_b": args.w_b, "pairs": args.pairs}
    return Plan(kind=KIND, dataset=args.dataset, epochs=args.epochs, lr=args.lr, seed=args.seed,
                schedule="one_cycle", options=opts)


def summary(run) -> dict[str, Any]:
    out = Outcome.of(run.results)

    def side(d):
        return {"A": round(d["A"], 4), "B": round(d["B"], 4), "params": int(d["params"])} if d else None
    return {"kind": KIND, "joint": side(out.joint if out else None), "single": side(out.single if out else None),
            "seconds": round(run.ended.seconds, 3) if run.ended else None}


def _run_command(args: argparse.Namespace) -> int:
    from ..cli import run_plan_here
    return run_plan_here(plan_for(args), lambda run, notes: summary(run))


register_command(Command(KIND, "multi-task learning: a shared trunk for two tasks vs two single-task networks",
                         _add_arguments, _run_command,
                         description="Train one network on two tasks at once (left digit, and right digit or "
                                     "background) beside two single-task networks of the same trunk; print one "
                                     "JSON line with each side's accuracy per task and parameter count."))


def per_task_rows(runs, names: dict[str, tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Compare's table for the multi-task runs among `runs`: one row each, every task's accuracy
    for the joint and the single-task networks, and the settings that tell the runs apart."""
    rows = []
    for r in runs:
        out = Outcome.of(r.results) if r.plan.kind == KIND else None
        if out is None:
            continue
        o = options(r.plan)
        rows.append({"run": (names or {}).get(r.id, (r.name,))[0], "task B": "right digit" if o["related"] else
                     "background", "B labels": f"{o['b_labels']:.0%}", "width": o["width"],
                     "joint A": out.joint["A"], "single A": out.single["A"], "joint B": out.joint["B"],
                     "single B": out.single["B"], "joint params": int(out.joint["params"]),
                     "single params": int(out.single["params"])})
    return rows
