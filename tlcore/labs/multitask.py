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
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..data.pairs import PAIR_SOURCES, TwoTaskSplits, is_two_task, load_two_task
from ..device import pick
from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train import rng
from ..train.events import Emit, LabResult, Metrics, Phase, RunStarted, register_schema
from ..train.phases import Clock, run_steps
from ..train.schedules import multiplier, plan_params
from ..train.scope import Failed, RunScope, check_stop
from ..cli import Command, register_command
from .multitask_net import GRID, TASKS, MultiTaskNet, multitask_loss, n_params, to_input

KIND = "multitask"
WEIGHTINGS = ("fixed", "uncertainty")
DEFAULTS: dict[str, Any] = {"related": True, "b_labels": 1.0, "width": 16, "weighting": "fixed",
                            "w_a": 1.0, "w_b": 1.0, "pairs": 2000}
WIDTHS = (1, 2, 4, 8, 16, 32)              # what the page offers; any 1..64 is valid
MAX_WIDTH = 64
PAIRS_RANGE = (100, 20_000)
EVAL_BATCH = 512

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
class Feed:
    """Batches from one pool of training pairs for the tasks labelled there, cycling through fresh
    permutations (a small pool repeats). Every arm drawing from a pool gets the same batches, so the
    joint and the single-task networks differ only in what they share."""
    tasks: tuple[str, ...]
    pool: torch.Tensor
    gen: torch.Generator
    queue: torch.Tensor | None = None

    def next(self, size: int) -> torch.Tensor:
        out = []
        while size > 0:
            if self.queue is None or len(self.queue) == 0:
                self.queue = self.pool[torch.randperm(len(self.pool), generator=self.gen)]
            take, self.queue = self.queue[:size], self.queue[size:]
            out.append(take)
            size -= len(take)
        return torch.cat(out)


@dataclass
class Arm:
    """One network being trained: the joint one, or the single-task network of task A or of B."""
    name: str                    # "joint", "single_A", "single_B"
    net: MultiTaskNet
    opt: torch.optim.Optimizer
    feeds: tuple[Feed, ...]      # each task's loss is a mean over a batch of its own feed
    weights: dict[str, float]    # fixed weights inside the joint network; {} (1 each) for a single task
    seconds: float = 0.0


def labelled_b(n: int, share: float, seed: int) -> torch.Tensor:
    """Which training pairs keep their task-B label (bool [n]): a seeded sample of round(share*n), at least one."""
    k = max(1, round(share * n))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))[:k]] = True
    return keep


def build_net(width: int, classes: dict[str, int], uncertainty: bool, seed: int) -> MultiTaskNet:
    # Same seed for every arm: the joint and the single-task networks start from the same trunk.
    with rng.seeded(seed):
        net = MultiTaskNet(width, classes, uncertainty)
    return net.to(memory_format=torch.channels_last)   # oneDNN's fast CPU kernels; 1.3x a step here


def make_optimizer(net: MultiTaskNet, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = [{"params": list(net.trunk.parameters()) + list(net.heads.parameters()), "weight_decay": weight_decay}]
    if net.log_vars is not None:   # decaying s_i would pull every task's weight towards 1
        groups.append({"params": list(net.log_vars.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr)


def joint_feeds(o: dict[str, Any], everything: Feed, labelled: Feed) -> tuple[Feed, ...]:
    """Task A's loss over a batch of all pairs and B's over a batch of B's labelled pairs, every step.
    (A mean over the few labelled pairs that happen to fall in A's batch, ~3 of 64 at 5%, gave B a
    gradient as large as A's and far noisier: it wrecked the shared trunk for A too.) With all of B's
    labels the one batch serves both. A task with a fixed weight of 0 draws nothing."""
    tasks = tuple(t for t in TASKS if o["weighting"] == "uncertainty" or o[f"w_{t.lower()}"] > 0)
    if len(labelled.pool) == len(everything.pool):
        return (Feed(tasks, everything.pool, everything.gen),)
    return tuple(f for f in (everything, labelled) if f.tasks[0] in tasks)


def make_arms(plan, data: TwoTaskSplits, keep_b: torch.Tensor) -> list[Arm]:
    o = options(plan)
    n_cls = {"A": len(data.classes_a), "B": len(data.classes_b)}

    def feed(task: str, pool: torch.Tensor, stream: int) -> Feed:
        return Feed((task,), pool, rng.generator(plan.seed + stream, rng.SHUFFLE))
    everything, labelled = torch.arange(len(data.train_a)), torch.nonzero(keep_b).flatten()
    specs = [("joint", n_cls, o["weighting"] == "uncertainty",
              joint_feeds(o, feed("A", everything, 0), feed("B", labelled, 1)), {"A": o["w_a"], "B": o["w_b"]}),
             ("single_A", {"A": n_cls["A"]}, False, (feed("A", everything, 0),), {}),
             ("single_B", {"B": n_cls["B"]}, False, (feed("B", labelled, 1),), {})]
    arms = []
    for name, classes, unc, feeds, weights in specs:
        net = build_net(o["width"], classes, unc, plan.seed)
        arms.append(Arm(name, net, make_optimizer(net, plan.lr, plan.weight_decay), feeds, weights))
    return arms


def arm_step(arm: Arm, data: TwoTaskSplits, plan, bs: int, step0: int, total: int) -> Callable[[int], torch.Tensor]:
    """The arm's i-th step of an epoch: its rate from the schedule, one batch per feed through the
    trunk together (BatchNorm sees them as one batch), each task's mean loss over its own batch."""
    params = plan_params(plan)
    labels = {"A": data.train_a, "B": data.train_b}

    def step(i: int) -> torch.Tensor:
        scale = multiplier(plan.schedule, step0 + i, total, **params)
        for g in arm.opt.param_groups:
            g["lr"] = plan.lr * scale
        draws = [f.next(bs) for f in arm.feeds]
        out = arm.net(to_input(data.train_x[torch.cat(draws)]).contiguous(memory_format=torch.channels_last))
        logits, targets = {}, {}
        masks = {t: torch.zeros(0, dtype=torch.bool) for t in arm.net.tasks}   # a task no feed serves: left out
        start = 0
        for f, idx in zip(arm.feeds, draws):
            for t in f.tasks:
                logits[t], targets[t] = out[t][start:start + len(idx)], labels[t][idx]
                masks[t] = torch.ones(len(idx), dtype=torch.bool)
            start += len(idx)
        loss, _ = multitask_loss(arm.net, logits, targets, masks, arm.weights)
        arm.opt.zero_grad(set_to_none=True)
        loss.backward()
        arm.opt.step()
        return loss
    return step


def train_arm(arm: Arm, data: TwoTaskSplits, plan, epoch: int, spe: int, clock: Clock, emit: Emit,
              should_stop: Callable[[], bool]) -> float:
    """One epoch of the arm's steps through the engine's driver; returns its mean training loss."""
    bs = min(plan.batch_size, len(data.train_a))
    arm.net.train()

    def finite(value: float, where: str) -> None:
        if not math.isfinite(value):
            raise Failed(f"the {arm.name} network's loss became {value} {where}: the learning rate "
                         f"({plan.lr:g}) is probably too high; try 10x lower")
    stats = run_steps(spe, arm_step(arm, data, plan, bs, epoch * spe, spe * plan.epochs), epoch=epoch, clock=clock,
                      batch=bs * len(arm.feeds), emit=emit, should_stop=should_stop,
                      lrs=lambda: (arm.opt.param_groups[0]["lr"],), on_loss=finite)
    arm.seconds += stats.seconds
    return stats.loss


@torch.no_grad()
def accuracy(net: MultiTaskNet, x: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    net.eval()
    hits = {t: 0 for t in net.tasks}
    for start in range(0, len(x), EVAL_BATCH):
        out = net(to_input(x[start:start + EVAL_BATCH]).contiguous(memory_format=torch.channels_last))
        for t in net.tasks:
            hits[t] += int((out[t].argmax(1) == labels[t][start:start + EVAL_BATCH]).sum())
    return {t: hits[t] / max(len(x), 1) for t in net.tasks}


# --- the run ---------------------------------------------------------------------------------------
ARM_TITLES = ("joint network", "single-task network A", "single-task network B")   # make_arms' order
def load(plan, emit: Emit, should_stop: Callable[[], bool]) -> tuple[TwoTaskSplits, torch.Tensor]:
    """The two-task pairs and which of them keep their task-B label."""
    o = options(plan)
    emit(Phase("data", 0, 1))
    data = load_two_task(plan.dataset, related=o["related"], train_pairs=o["pairs"], seed=plan.seed)
    emit(Phase("data", 1, 1))
    check_stop(should_stop)
    return data, labelled_b(len(data.train_a), o["b_labels"], plan.seed)


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        policy = pick("cpu")   # the trunk is tiny: a GPU's launch overheads would cost more than its speed gives
        data, keep_b = load(plan, emit, should_stop)
        scope.keep(classes=data.classes_a)
        arms = make_arms(plan, data, keep_b)
        spe = max(1, len(data.train_a) // min(plan.batch_size, len(data.train_a)))
        total = spe * len(arms) * plan.epochs   # every arm's steps: what the progress line counts
        emit(RunStarted(plan.to_dict(), policy.name, n_params(arms[0].net), 0, ("trunk",), len(data.train_a),
                        len(data.val_a), data.classes_a, dataset_name=data.name, steps_per_epoch=spe * len(arms)))
        val = {"A": data.val_a, "B": data.val_b}
        final: dict[str, dict[str, float]] = {}
        for epoch in range(plan.epochs):
            for k, arm in enumerate(arms):
                # The arms take turns, one epoch each: step indices run on across them. The progress
                # line (a Phase: lab pages read no Step events) says which network of which epoch.
                done = epoch * len(arms) + k
                emit(Phase(f"epoch {epoch + 1} of {plan.epochs} · {ARM_TITLES[k]}", done, plan.epochs * len(arms)))
                clock = Clock(scope.t0, done * spe, total)
                loss = train_arm(arm, data, plan, epoch, spe, clock, emit, should_stop)
                final[arm.name] = acc = accuracy(arm.net, data.val_x, val)
                for task, a in acc.items():
                    emit(LabResult(EPOCH_SCHEMA, {"arm": "joint" if k == 0 else "single", "task": task,
                                                  "epoch": epoch, "train_loss": loss, "val_acc": a}))
            scope.keep(extra={"multitask.pt": {a.name: {k: v.detach().clone() for k, v in a.net.state_dict().items()}
                                               for a in arms}})
        emit_outcome(arms, final, options(plan)["b_labels"], emit)


def emit_outcome(arms: list[Arm], final: dict[str, dict[str, float]], share: float, emit: Emit) -> None:
    """Each side's final accuracy per task, parameters and seconds, and the run's metrics."""
    joint, single = arms[0], arms[1:]
    j, sa, sb = final["joint"], final["single_A"]["A"], final["single_B"]["B"]
    single_params = sum(n_params(a.net) for a in single)
    single_seconds = sum(a.seconds for a in single)
    emit(LabResult(ARM_SCHEMA, {"arm": "joint", "acc_A": j["A"], "acc_B": j["B"], "params": n_params(joint.net),
                                "seconds": joint.seconds}))
    emit(LabResult(ARM_SCHEMA, {"arm": "single", "acc_A": sa, "acc_B": sb, "params": single_params,
                                "seconds": single_seconds}))
    metrics = {"val_acc": (j["A"] + j["B"]) / 2, "joint_A": j["A"], "joint_B": j["B"], "single_A": sa,
               "single_B": sb, "joint_params": n_params(joint.net), "single_params": single_params,
               "joint_seconds": joint.seconds, "single_seconds": single_seconds, "b_labels": share}
    if joint.net.log_vars is not None:
        metrics.update({f"s_{t}": float(joint.net.log_vars[t].detach()) for t in TASKS})
    emit(Metrics(metrics))


def train_images(plan, data):
    """What the host's image limit counts: the training pairs the run draws, not the base set behind them."""
    from ..limits import TrainImages
    return TrainImages(options(plan)["pairs"], "options.pairs", "training pairs (--pairs)", least=PAIRS_RANGE[0])


register_kind(Kind(KIND, "Multi-task comparison", run, validate=validate, results=(EPOCH_SCHEMA, ARM_SCHEMA), unit="arm",
                   train_images=train_images,
                   network=lambda p: "small CNN trunk, one head per task"))


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


MARGIN = 0.02   # accuracy differences below two points (12 of 600 validation pairs) are read as "about the same"


def _compare(j: float, s: float) -> str:
    if j > s + MARGIN:
        return f"the joint network did better ({j:.3f} vs {s:.3f})"
    if j < s - MARGIN:
        return f"the joint network did worse ({j:.3f} vs {s:.3f})"
    return f"both did about the same ({j:.3f} vs {s:.3f})"


def _effect(gain: float, task: str) -> str:
    """What sharing did to one task, as the run measured it (joint minus single-task accuracy)."""
    if gain > MARGIN:
        return f"gained task {task} {gain * 100:.1f} points"
    if gain < -MARGIN:
        return f"cost task {task} {-gain * 100:.1f} points"
    return f"moved task {task} by {gain * 100:+.1f} points, within the {MARGIN * 100:.0f}-point margin read as no change"


def findings(opts: dict[str, Any], out: Outcome, learned: dict[str, float] | None = None) -> list[str]:
    """What one run showed, against the notes' three conditions: each rule as the notes put it,
    then only what this run's numbers say. `learned`: the run's metrics (uncertainty weighting's s_A, s_B)."""
    o = {**DEFAULTS, **opts}
    j, s = out.joint, out.single
    gain_a, gain_b = j["A"] - s["A"], j["B"] - s["B"]
    what_b = "the right digit" if o["related"] else "the background's brightness"
    said = [f"Task A (left digit): {_compare(j['A'], s['A'])}. Task B ({what_b}): {_compare(j['B'], s['B'])}."]
    if o["related"]:
        said.append("Shared features (the notes: tasks should be able to share lower-level features): task B reads "
                    f"a digit too, and sharing the trunk {_effect(gain_b, 'B')}.")
    else:
        said.append("Shared features (the notes: tasks should be able to share lower-level features): task B, the "
                    f"background's brightness, needs nothing a digit reader learns; sharing the trunk "
                    f"{_effect(gain_a, 'A')}.")
    said.append(_amounts(o, gain_a, gain_b))
    said.append(_size(o, j, s, gain_a, gain_b))
    s_ = {t: learned[f"s_{t}"] for t in TASKS if learned and f"s_{t}" in learned}
    if len(s_) == len(TASKS):
        lighter = max(s_, key=s_.get)
        said.append(f"Uncertainty weighting learned s_A = {s_['A']:.2f} and s_B = {s_['B']:.2f}: task {lighter}'s "
                    f"loss ended weighted {math.exp(-s_[lighter]):.2f} against "
                    f"{math.exp(-min(s_.values())):.2f} for the other.")
    return said


def _amounts(o: dict[str, Any], gain_a: float, gain_b: float) -> str:
    share = o["b_labels"]
    kept = f"task B kept {share:.0%} of its labels ({max(1, round(share * o['pairs'])):,} of {o['pairs']:,} pairs)"
    if share >= 0.5:
        return f"Similar amounts of data (the notes' second condition): {kept}, about as many as task A's."
    return (f"Unequal amounts of data (the notes' second condition): {kept}. Each step took B's loss over a batch "
            f"of its own labelled pairs and A's over a batch of all pairs; sharing the trunk {_effect(gain_b, 'B')} "
            f"and {_effect(gain_a, 'A')}.")


def _size(o: dict[str, Any], j: dict[str, float], s: dict[str, float], gain_a: float, gain_b: float) -> str:
    w = o["width"]
    said = (f"Network size (the notes' third condition): the trunk's last layer has {4 * w} channels (width {w}) on a "
            f"{GRID}x{GRID} grid both heads read; the joint "
            f"network has {int(j['params']):,} parameters against {int(s['params']):,} for the two single-task "
            f"networks ({j['params'] / max(s['params'], 1):.0%}).")
    worse = [t for t, g in (("A", gain_a), ("B", gain_b)) if g < -MARGIN]
    if s["A"] < 0.5 and s["B"] < 0.5:
        return said + (f" Even alone, each task reached only {s['A']:.3f} (A) and {s['B']:.3f} (B) on this trunk.")
    if not worse:
        return said + f" Sharing it cost neither task more than {MARGIN * 100:.0f} points."
    return said + (f" Sharing it cost task {' and '.join(worse)} accuracy; a wider trunk is the run that tells "
                   "whether size was the reason.")


PAGE_EPOCHS, PAGE_LR = 5, 3e-3   # what the page and the command line start from
# The lesson's setting: task B keeps 5% of its labels (100 of 2,000 pairs), where sharing has the most to give.
# B's loss at half weight: its batches cycle through those 100 pairs, and at full weight its pull on the
# trunk cost task A 1-1.7 points over seeds 0-2; at 0.5 A stays within a point and B gains more.
PAGE_OPTIONS: dict[str, Any] = {**DEFAULTS, "b_labels": 0.05, "w_b": 0.5}


def lab_plan(*, dataset: str = "digit_pairs", epochs: int = PAGE_EPOCHS, lr: float = PAGE_LR, seed: int = 0,
             **opts: Any):
    """The plan the page and the command line build: one-cycle at `lr`, the page's option for every one not given."""
    from ..train.plan import Plan
    return Plan(kind=KIND, dataset=dataset, epochs=epochs, lr=lr, seed=seed, schedule="one_cycle",
                options={**PAGE_OPTIONS, **opts})


# --- the command line ------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    o = PAGE_OPTIONS
    p.add_argument("--dataset", default="digit_pairs", help=f"two-task images: {', '.join(PAIR_SOURCES)} "
                                                             "(default: digit_pairs)")
    p.add_argument("--b-labels", type=float, default=o["b_labels"],
                   help=f"share of task B's labels kept, in (0, 1] (default: {o['b_labels']:g}, the page's)")
    p.add_argument("--epochs", type=int, default=PAGE_EPOCHS, help=f"passes over the training pairs (default: {PAGE_EPOCHS})")
    p.add_argument("--width", type=int, default=o["width"], help=f"trunk width (default: {o['width']})")
    p.add_argument("--unrelated", action="store_true", help="task B: the background's brightness, not the right digit")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=o["weighting"], help="fixed weights, or learned uncertainty")
    p.add_argument("--w-a", type=float, default=o["w_a"], help="task A's loss weight (fixed weighting)")
    p.add_argument("--w-b", type=float, default=o["w_b"], help="task B's loss weight (fixed weighting)")
    p.add_argument("--pairs", type=int, default=o["pairs"], help=f"training pairs (default: {o['pairs']})")
    p.add_argument("--lr", type=float, default=PAGE_LR, help=f"peak learning rate (default: {PAGE_LR:g})")
    p.add_argument("--seed", type=int, default=0)


def plan_for(args: argparse.Namespace):
    return lab_plan(dataset=args.dataset, epochs=args.epochs, lr=args.lr, seed=args.seed, related=not args.unrelated,
                    b_labels=args.b_labels, width=args.width, weighting=args.weighting, w_a=args.w_a, w_b=args.w_b,
                    pairs=args.pairs)


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
