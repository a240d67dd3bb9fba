"""Depth lab: why deep networks were hard to train, and what shortcuts and BatchNorm changed.

Several networks of the same depth and width (tlcore.labs.depth_net), each a choice of activation
(sigmoid, tanh, ReLU), with or without BatchNorm, plain or with shortcuts, train side by side on the
same batches of small images. For each the run measures every weight layer's gradient norm per weight
(depth_net.grad_rms) at initialisation and at four points of training, and the training loss and
error over the steps.

The lecture notes: with logistic or tanh units dy/dz = y(1-y) or (1+y)(1-y), so the error gradient
is squashed at every layer it passes back through (a sigmoid's is at most 1/4); ResNet's shortcuts
give it a path around the layers. He et al. (2016, Figure 1 and Table 2): a deeper plain network
has the higher training error, a residual one of the same depth does not.

Every network trains with the plan's optimiser (SGD with momentum on the page), rate and schedule,
and the gradient's global norm clipped at CLIP: ReLU networks without BatchNorm otherwise blow up
at the rate the others need (the notes' exploding gradient). Clipping scales every layer by the
same factor, so the ratio between layers is untouched, and the norms reported are measured before it.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..cli import Command, register_command
from ..data import load_dataset
from ..device import pick
from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train import rng
from ..train.events import Emit, LabResult, Metrics, Phase, RunStarted, register_schema
from ..train.phases import Clock, run_steps
from ..train.schedules import multiplier, plan_params
from ..train.scope import Failed, RunScope, check_stop
from .depth_net import ACTIVATIONS, DepthNet, grad_rms, n_params

KIND = "depth"
DATASETS = ("digits", "mnist", "fashion_mnist")   # small grey images the stacks can train on in seconds
SIDE = 14                 # px the images are kept at (digits stay at their own 8)
DEPTH_RANGE = (8, 50)     # weight layers; even (a stem, pairs of convolutions, the classifier)
WIDTH_RANGE = (4, 64)
MAX_ARMS = 6
CLIP = 1.0                # the gradient's global norm is clipped here before each step
SNAPSHOTS = 5             # gradient norms at the start, after each quarter and at the end of training
CURVE_POINTS = 50         # training loss / error points per network
EVAL_BATCH = 512
CHANCE_LOSS = math.log(10)   # cross-entropy of a uniform guess over 10 classes: "learned nothing"
TINY = 1e-45              # the smallest positive float32: a norm that underflowed to 0 is read as below it

# Each network is a code: the activation, then "+bn" and "+residual" when it has them.
DEFAULT_ARMS = ("sigmoid", "sigmoid+residual", "relu+bn", "relu+bn+residual")
DEFAULTS: dict[str, Any] = {"depth": 20, "width": 16, "arms": list(DEFAULT_ARMS)}

GRAD = register_schema("depth_grad", {"arm": str, "step": int, "layer": int, "grad_rms": float})
CURVE = register_schema("depth_curve", {"arm": str, "step": int, "train_loss": float, "train_error": float})
ARM = register_schema("depth_arm", {"arm": str, "depth": int, "params": int, "grad_first": float,
                                    "grad_last": float, "orders": float, "train_loss": float, "train_error": float,
                                    "val_acc": float, "seconds": float})


# --- the networks a run trains ---------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSpec:
    activation: str
    batchnorm: bool
    residual: bool

    @property
    def code(self) -> str:
        return self.activation + "+bn" * self.batchnorm + "+residual" * self.residual

    @property
    def title(self) -> str:
        act = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU"}[self.activation]
        return f"{act}{' + BatchNorm' if self.batchnorm else ''} · {'residual' if self.residual else 'plain'}"

    @property
    def twin(self) -> "ArmSpec":
        """The same network with the shortcuts toggled: what it is compared with at equal depth."""
        return ArmSpec(self.activation, self.batchnorm, not self.residual)

    @classmethod
    def parse(cls, code: Any) -> "ArmSpec":
        if not isinstance(code, str):
            raise PlanError("options.arms", f"each network is a code such as 'relu+bn+residual', not {code!r}")
        act, *extra = code.split("+")
        spec = cls(act, "bn" in extra, "residual" in extra)
        if act not in ACTIVATIONS or spec.code != code:
            raise PlanError("options.arms", f"unknown network {code!r}: an activation ({', '.join(ACTIVATIONS)}), "
                                            "then '+bn' and '+residual' if wanted, in that order")
        return spec


def arm_codes() -> list[str]:
    """Every network the lab can train, in the order the page lists them."""
    return [ArmSpec(a, bn, res).code for a in ACTIVATIONS for bn in (False, True) for res in (False, True)]


# --- options ---------------------------------------------------------------------------------------
def options(plan) -> dict[str, Any]:
    return {**DEFAULTS, **plan.options}


def arms_of(plan) -> list[ArmSpec]:
    return [ArmSpec.parse(c) for c in options(plan)["arms"]]


def _whole(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PlanError(f"options.{name}", f"must be a whole number from {lo} to {hi}, not {value!r}")
    return value


def validate(plan) -> None:
    unknown = sorted(set(plan.options) - set(DEFAULTS))
    if unknown:
        raise PlanError(f"options.{unknown[0]}", f"is not a depth-lab option; use {', '.join(DEFAULTS)}")
    if plan.dataset not in DATASETS:
        raise PlanError("dataset", f"the depth lab trains on small grey images: one of {', '.join(DATASETS)}, "
                                   f"not {plan.dataset!r}")
    o = options(plan)
    depth = _whole("depth", o["depth"], *DEPTH_RANGE)
    if depth % 2:
        raise PlanError("options.depth", f"must be even (a stem, pairs of 3x3 convolutions, the classifier), "
                                         f"not {depth}")
    _whole("width", o["width"], *WIDTH_RANGE)
    arms = o["arms"]
    if not isinstance(arms, (list, tuple)) or not 1 <= len(arms) <= MAX_ARMS:
        raise PlanError("options.arms", f"must list 1 to {MAX_ARMS} networks, e.g. ['sigmoid', 'relu+bn+residual']")
    specs = [ArmSpec.parse(c) for c in arms]
    if len({s.code for s in specs}) != len(specs):
        raise PlanError("options.arms", "lists a network twice")


# --- data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    x: torch.Tensor           # training images, float, standardised
    y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    name: str
    classes: tuple[str, ...]


def load(plan, emit: Emit, should_stop: Callable[[], bool]) -> Inputs:
    emit(Phase("data", 0, 1))
    d = load_dataset(plan.dataset, image_size=SIDE, per_class=plan.per_class, imbalance=plan.imbalance,
                     seed=plan.seed)
    emit(Phase("data", 1, 1))
    check_stop(should_stop)
    x = d.train_x.float() / 255
    mean, std = float(x.mean()), float(x.std())   # the training split's, applied to both

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t.float() / 255 - mean) / max(std, 1e-6)
    return Inputs(norm(d.train_x), d.train_y, norm(d.val_x), d.val_y, d.name, tuple(d.classes))


def build(arm: ArmSpec, depth: int, width: int, seed: int, classes: int) -> DepthNet:
    # One seed for every network of a run: a plain and a residual network start from the same weights.
    with rng.seeded(seed):
        return DepthNet(depth, width, arm.activation, arm.batchnorm, arm.residual, classes=classes)


def snapshot_steps(total: int) -> tuple[int, ...]:
    """The steps whose gradients are recorded: the first (the initialisation), each quarter, the last."""
    return tuple(sorted({round(i * (total - 1) / (SNAPSHOTS - 1)) for i in range(SNAPSHOTS)}))


def orders(first: float, last: float) -> float:
    """log10(first / last): how many orders of magnitude the first layer's gradient is below (-) the last's."""
    return math.log10(max(first, TINY) / max(last, TINY))


# --- training one network --------------------------------------------------------------------------
@dataclass
class Trace:
    """What a network's training recorded, emitted as it goes."""
    arm: ArmSpec
    emit: Emit
    every: int
    first: list[float] | None = None   # gradient norms at initialisation
    loss_sum: float = 0.0
    wrong: int = 0
    seen: int = 0
    steps: int = 0

    def grads(self, step: int, norms: list[float]) -> None:
        if self.first is None:
            self.first = norms
        for layer, g in enumerate(norms, start=1):
            self.emit(LabResult(GRAD, {"arm": self.arm.code, "step": step, "layer": layer, "grad_rms": g}))

    def batch(self, step: int, loss: float, wrong: int, n: int, last: bool) -> None:
        self.loss_sum += loss
        self.wrong, self.seen, self.steps = self.wrong + wrong, self.seen + n, self.steps + 1
        if self.steps == self.every or last:
            self.emit(LabResult(CURVE, {"arm": self.arm.code, "step": step, "train_loss": self.loss_sum / self.steps,
                                        "train_error": self.wrong / self.seen}))
            self.loss_sum, self.wrong, self.seen, self.steps = 0.0, 0, 0, 0


def make_optimizer(net: DepthNet, plan) -> torch.optim.Optimizer:
    if plan.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay)
    return torch.optim.AdamW(net.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)


def arm_step(net: DepthNet, opt: torch.optim.Optimizer, data: Inputs, perm: torch.Tensor, plan, epoch: int,
             spe: int, bs: int, trace: Trace, marks: tuple[int, ...]) -> Callable[[int], torch.Tensor]:
    """The network's i-th step of an epoch: its rate from the schedule, one batch, the gradient norms
    read before clipping on the recorded steps, the clipped step."""
    total, params = spe * plan.epochs, plan_params(plan)

    def step(i: int) -> torch.Tensor:
        s = epoch * spe + i
        for g in opt.param_groups:
            g["lr"] = plan.lr * multiplier(plan.schedule, s, total, **params)
        idx = perm[i * bs:(i + 1) * bs]
        logits = net(data.x[idx])
        loss = F.cross_entropy(logits, data.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s in marks:
            trace.grads(s, grad_rms(net))
        torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        opt.step()
        trace.batch(s, float(loss.detach()), int((logits.argmax(1) != data.y[idx]).sum()), len(idx), s == total - 1)
        return loss
    return step


@torch.no_grad()
def evaluate(net: DepthNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, error rate) over all of x."""
    net.eval()
    loss, wrong = 0.0, 0
    for i in range(0, len(x), EVAL_BATCH):
        logits = net(x[i:i + EVAL_BATCH])
        loss += float(F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum"))
        wrong += int((logits.argmax(1) != y[i:i + EVAL_BATCH]).sum())
    return loss / max(len(x), 1), wrong / max(len(x), 1)


def train_arm(k: int, arm: ArmSpec, data: Inputs, plan, scope: RunScope, emit: Emit,
              should_stop: Callable[[], bool], n_arms: int) -> tuple[DepthNet, dict[str, Any]]:
    o = options(plan)
    net = build(arm, o["depth"], o["width"], plan.seed, len(data.classes))
    opt = make_optimizer(net, plan)
    bs = min(plan.batch_size, len(data.y))
    spe = max(1, len(data.y) // bs)
    total = spe * plan.epochs
    trace = Trace(arm, emit, max(1, total // CURVE_POINTS))
    marks = snapshot_steps(total)
    gen = rng.generator(plan.seed, rng.SHUFFLE)   # every network sees the same batches in the same order

    def finite(value: float, where: str) -> None:
        if not math.isfinite(value):
            raise Failed(f"the {arm.title} network's loss became {value} {where}: try a 10x lower learning rate "
                         f"than {plan.lr:g}")
    t0 = time.perf_counter()
    net.train()
    for epoch in range(plan.epochs):
        done = k * plan.epochs + epoch
        emit(Phase(f"network {k + 1} of {n_arms}: {arm.title} · epoch {epoch + 1} of {plan.epochs}", done,
                   n_arms * plan.epochs))
        perm = torch.randperm(len(data.y), generator=gen)[: spe * bs]
        run_steps(spe, arm_step(net, opt, data, perm, plan, epoch, spe, bs, trace, marks), epoch=epoch,
                  clock=Clock(scope.t0, k * total + epoch * spe, n_arms * total), batch=bs, emit=emit,
                  should_stop=should_stop, lrs=lambda: (opt.param_groups[0]["lr"],), on_loss=finite)
    seconds = time.perf_counter() - t0
    train_loss, train_error = evaluate(net, data.x, data.y)
    _, val_error = evaluate(net, data.val_x, data.val_y)
    first = trace.first or [0.0] * o["depth"]
    convs = first[:-1]   # the classifier reads 16 pooled numbers: the first and the last convolution compare
    row = {"arm": arm.code, "depth": o["depth"], "params": n_params(net), "grad_first": convs[0],
           "grad_last": convs[-1], "orders": orders(convs[0], convs[-1]), "train_loss": train_loss,
           "train_error": train_error, "val_acc": 1 - val_error, "seconds": seconds}
    return net, row


# --- the run ---------------------------------------------------------------------------------------
def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        policy = pick("cpu")   # networks this small run faster on the CPU than a GPU launches their kernels
        data = load(plan, emit, should_stop)
        scope.keep(classes=data.classes)
        arms, o = arms_of(plan), options(plan)
        spe = max(1, len(data.y) // min(plan.batch_size, len(data.y)))
        first = build(arms[0], o["depth"], o["width"], plan.seed, len(data.classes))
        emit(RunStarted(plan.to_dict(), policy.name, n_params(first), 0, tuple(a.code for a in arms), len(data.y),
                        len(data.val_y), data.classes, dataset_name=data.name, steps_per_epoch=spe))
        rows, weights = [], {}
        for k, arm in enumerate(arms):
            net, row = train_arm(k, arm, data, plan, scope, emit, should_stop, len(arms))
            emit(LabResult(ARM, row))
            rows.append(row)
            weights[arm.code] = {n: v.detach().clone() for n, v in net.state_dict().items()}
            scope.keep(extra={"depth.pt": weights})
        emit(Metrics({**{f"{r['arm']} train_loss": r["train_loss"] for r in rows},
                      **{f"{r['arm']} orders": r["orders"] for r in rows},
                      "train_loss": min(r["train_loss"] for r in rows)}))


# ARM last: the progress line counts what ran, one row per network.
register_kind(Kind(KIND, "Depth: plain vs residual", run, validate=validate, results=(GRAD, CURVE, ARM),
                   unit="network"))


# --- reading a finished run ------------------------------------------------------------------------
def arm_rows(results) -> dict[str, dict[str, Any]]:
    """network code -> its summary row, in the order the run trained them."""
    return {r.values["arm"]: r.values for r in results if r.schema == ARM}


def grad_rows(results) -> dict[str, dict[int, list[float]]]:
    """network code -> {step: gradient norm per weight of each weight layer, input to output}."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in results:
        if r.schema == GRAD:
            v = r.values
            out.setdefault(v["arm"], {}).setdefault(v["step"], {})[v["layer"]] = v["grad_rms"]
    return {a: {s: [layers[i] for i in sorted(layers)] for s, layers in steps.items()} for a, steps in out.items()}


def curve_rows(results) -> dict[str, list[dict[str, Any]]]:
    """network code -> its training-loss points, in step order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.schema == CURVE:
            out.setdefault(r.values["arm"], []).append(r.values)
    return out


VANISHED, WITHIN = -2.0, 1.0   # orders of magnitude: "vanished" at 2 or more below; "within one order"


def gradient_verdict(o: float) -> str:
    if o <= VANISHED:
        return "vanished"
    if abs(o) < WITHIN:
        return "within one order"
    return "weakened" if o < 0 else "grew towards the input"


def _orders_text(row: dict[str, Any]) -> str:
    if row["grad_first"] == 0.0:
        return "too small for a float32 to hold (over 44 orders of magnitude below the last convolution's)"
    o = row["orders"]
    if abs(o) < 0.05:
        return "about the same as the last convolution's"
    side = "below" if o < 0 else "above"
    return f"{abs(o):.1f} order{'s' if abs(o) >= 1.05 else ''} of magnitude {side} the last convolution's"


def _pair_verdict(residual: float, plain: float) -> str:
    if min(residual, plain) > 0.97 * CHANCE_LOSS:
        return "neither learned in these steps; shortcuts alone do not make this activation train."
    if residual < 0.9 * plain:
        return "the shortcuts made it easier to train."
    if plain < 0.9 * residual:
        return "here the plain network trained further."
    return "about the same."


def findings(rows: dict[str, dict[str, Any]], steps: int) -> list[str]:
    """What this run showed, network by network, then each plain/residual pair at equal depth."""
    said = []
    for code, r in rows.items():
        arm = ArmSpec.parse(code)
        verdict = gradient_verdict(r["orders"])
        learned = ("and it learned nothing: its training loss stayed at chance "
                   f"({r['train_loss']:.2f}, ln 10 = {CHANCE_LOSS:.2f})") if r["train_loss"] > 0.97 * CHANCE_LOSS \
            else f"and its training loss ended at {r['train_loss']:.3f} (training error {r['train_error']:.1%})"
        said.append(f"**{arm.title}** ({r['depth']} layers): at the start the first convolution's gradient was "
                    f"{_orders_text(r)} ({verdict}), {learned}.")
    for code, r in rows.items():
        arm = ArmSpec.parse(code)
        twin = rows.get(arm.twin.code)
        if not arm.residual or twin is None:
            continue
        said.append(f"At equal depth ({r['depth']} layers) and in the same {steps} steps, the residual "
                    f"{arm.title.split(' · ')[0]} network ended at training loss {r['train_loss']:.3f} against "
                    f"{twin['train_loss']:.3f} for the plain one: {_pair_verdict(r['train_loss'], twin['train_loss'])}")
    return said


# --- the page's and the command line's plan ------------------------------------------------------------
PAGE_EPOCHS, PAGE_LR, PAGE_BATCH = 8, 0.1, 64
PAGE_PER_CLASS = {"digits": None, "mnist": 150, "fashion_mnist": 150}   # ~1,500 training images each


def lab_plan(*, dataset: str = "digits", epochs: int = PAGE_EPOCHS, lr: float = PAGE_LR, seed: int = 0,
             optimizer: str = "sgd", **opts: Any):
    """The plan the page and the command line build: SGD with momentum, one-cycle at `lr`, batches of 64."""
    from ..train.plan import Plan
    return Plan(kind=KIND, dataset=dataset, per_class=PAGE_PER_CLASS.get(dataset), epochs=epochs, lr=lr, seed=seed,
                optimizer=optimizer, schedule="one_cycle", batch_size=PAGE_BATCH, options={**DEFAULTS, **opts})


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=int, default=DEFAULTS["depth"],
                   help=f"weight layers, even, {DEPTH_RANGE[0]} to {DEPTH_RANGE[1]} (default: {DEFAULTS['depth']})")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="the activation (default: relu)")
    p.add_argument("--batchnorm", action="store_true", help="BatchNorm before every activation")
    p.add_argument("--residual", action="store_true", help="shortcuts around every pair of convolutions")
    p.add_argument("--width", type=int, default=DEFAULTS["width"], help=f"channels (default: {DEFAULTS['width']})")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="the images (default: digits, offline)")
    p.add_argument("--epochs", type=int, default=PAGE_EPOCHS, help=f"passes over the images (default: {PAGE_EPOCHS})")
    p.add_argument("--lr", type=float, default=PAGE_LR,
                   help=f"peak learning rate, SGD one-cycle (default: {PAGE_LR:g})")
    p.add_argument("--seed", type=int, default=0)


def plan_for(args: argparse.Namespace):
    arm = ArmSpec(args.activation, args.batchnorm, args.residual)
    return lab_plan(dataset=args.dataset, epochs=args.epochs, lr=args.lr, seed=args.seed, depth=args.depth,
                    width=args.width, arms=[arm.code])


def summary(run) -> dict[str, Any]:
    rows, grads = arm_rows(run.results), grad_rows(run.results)
    arms = []
    for code, r in rows.items():
        steps = sorted(grads.get(code, {}))
        arms.append({"arm": code, "depth": r["depth"],
                     "grad_rms_init": [float(f"{g:.3g}") for g in grads[code][steps[0]]] if steps else [],
                     "grad_rms_end": [float(f"{g:.3g}") for g in grads[code][steps[-1]]] if steps else [],
                     "orders_first_vs_last_conv": round(r["orders"], 2), "final_train_loss": round(r["train_loss"], 4),
                     "train_error": round(r["train_error"], 4), "val_acc": round(r["val_acc"], 4)})
    one = arms[0] if len(arms) == 1 else None
    return {"kind": KIND, **(one if one else {"arms": arms}),
            "seconds": round(run.ended.seconds, 3) if run.ended else None}


def _run_command(args: argparse.Namespace) -> int:
    from ..cli import run_plan_here
    return run_plan_here(plan_for(args), lambda run, notes: summary(run))


register_command(Command(KIND, "why deep networks were hard to train: gradient norms by layer, plain vs residual",
                         _add_arguments, _run_command,
                         description="Train one deep stack of 3x3 convolutions (an activation, with or without "
                                     "BatchNorm and shortcuts) on small images; print one JSON line with every "
                                     "weight layer's gradient norm per weight at the start and the end, and the "
                                     "final training loss."))
