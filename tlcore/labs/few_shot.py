"""One-shot and few-shot learning: how well can a class be learned from k = 1, 2, 5, ... images?

The lecture notes: one-shot learning learns object categories from one, or only a few, images. A
pretrained network makes that possible because its CNN codes already separate many kinds of image.
For each k the run draws k training images per class several times (the draws differ only in which
images), and scores four learners on the whole validation split:

  prototypes   each class's mean CNN code, a new image goes to the nearest one (cosine): nothing is
               fitted, so a single image per class is enough (Snell et al. 2017's prototypes, on
               frozen codes)
  logreg       a logistic regression on the standardised CNN codes
  fine_tune    the top layer group and a new head, trained on the k images per class (the groups
               below stay frozen: their outputs are the engine's cached features)
  pixels       the project's baseline without a network: an SVM on the raw pixels

Accuracy against k, with its spread over the draws, is the lab's figure.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import subsample
from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.phases import Clock, make_optimiser, prepare, run_steps, started
from ..train.scope import Failed, RunScope, check_stop
from ..train.sklearn_heads import fit_predict, pixel_features
from .codes import check_plan, frozen_codes

KIND = "few_shot"
ARMS = ("prototypes", "logreg", "fine_tune", "pixels")
TITLES = {"prototypes": "nearest class mean (prototypes) on CNN codes", "logreg": "logistic regression on CNN codes",
          "fine_tune": "fine-tuning the top group + head", "pixels": "SVM on raw pixels (no network)"}
# The page, the command line and the lesson start from these (64 px: the codes are as good as at 96 px
# on digits, measured 2026-12-07, at under half the feature pass).
DEFAULTS: dict[str, Any] = {"ks": [1, 2, 5, 10, 20], "draws": 5, "steps": 20}
IMAGE_SIZE = 64
FINE_TUNE_LR = 1e-2      # the head's rate; the top group trains at lr / factor (discriminative)
MAX_K, MAX_DRAWS, MAX_STEPS = 100, 20, 500

SETUP = register_schema("few_shot_setup", {"smallest_class": int, "skipped": str, "layer": str})
ARM = register_schema("few_shot_arm", {"arm": str, "k": int, "mean": float, "sd": float, "low": float,
                                       "high": float, "draws": int})
DRAW = register_schema("few_shot_draw", {"k": int, "draw": int, "prototypes": float, "logreg": float,
                                         "fine_tune": float, "pixels": float})


# --- options ---------------------------------------------------------------------------------------
def options(plan) -> dict[str, Any]:
    return {**DEFAULTS, **plan.options}


def _whole(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise PlanError(f"options.{name}", f"must be a whole number from {lo} to {hi}, not {v!r}")
    return v


def validate(plan) -> None:
    unknown = sorted(set(plan.options) - set(DEFAULTS))
    if unknown:
        raise PlanError(f"options.{unknown[0]}", f"is not a few-shot option; use {', '.join(DEFAULTS)}")
    o = options(plan)
    ks = o["ks"]
    if not isinstance(ks, list) or not ks:
        raise PlanError("options.ks", "must be a list of images per class, e.g. [1, 2, 5, 10, 20]")
    for k in ks:
        _whole("ks", k, 1, MAX_K)
    if ks != sorted(set(ks)):
        raise PlanError("options.ks", f"must rise with no repeats, not {ks}")
    _whole("draws", o["draws"], 1, MAX_DRAWS)
    _whole("steps", o["steps"], 1, MAX_STEPS)
    if plan.imbalance != 1.0:
        raise PlanError("imbalance", "the few-shot lab draws the same k images from every class: "
                                     "leave the imbalance at 1")
    check_plan(plan, "few-shot")


# --- the learners ----------------------------------------------------------------------------------
def prototype_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray, n_classes: int) -> np.ndarray:
    """Nearest class mean by cosine: codes scaled to unit length, each class's mean direction."""
    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    tr, te = unit(train), unit(test)
    means = np.stack([tr[y == c].mean(0) for c in range(n_classes)])
    return (te @ unit(means).T).argmax(1)


def logreg_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    pred, _, _ = fit_predict("logreg", train, y, test)
    return pred


def draw_seed(seed: int, k: int, draw: int) -> int:
    """Which k images a draw takes: distinct per (run seed, k, draw), the same in every arm."""
    return (seed * 1_000_003 + k * 1_009 + draw) % (2**31 - 1)


class FineTuner:
    """The top layer group and a fresh head trained on the cached maps of a draw's images; every draw
    starts again from the pretrained top group and the same head initialisation."""

    def __init__(self, codes, train_y: torch.Tensor, plan, steps: int) -> None:
        self.net, self.plan, self.steps = codes.net, plan, steps
        self.policy = codes.prepared.policy
        self.cut = len(self.net.group_names) - 1
        self.top = list(self.net.groups.values())[self.cut]
        self.start = copy.deepcopy({"top": self.top.state_dict(), "head": self.net.head.state_dict()})
        self.train, self.val = codes.maps.train, codes.maps.val
        self.train_y = train_y.to(self.train.device)

    def accuracy(self, keep: torch.Tensor, val_y: torch.Tensor, emit, should_stop, clock: Clock) -> float:
        net, top = self.net, self.top
        top.load_state_dict(self.start["top"])
        net.head.load_state_dict(self.start["head"])
        # Inference mode throughout: with 1-20 images a class, batch statistics would be noise, so the top
        # group's BatchNorm keeps ImageNet's running statistics while its weights and the head learn.
        net.eval()
        net.requires_grad_(False)
        top.requires_grad_(True)
        net.head.requires_grad_(True)
        opt = make_optimiser(net, self.plan, self.policy)
        keep = keep.to(self.train.device)
        x, y = self.train[keep].float(), self.train_y[keep]

        def step(i: int) -> torch.Tensor:
            opt.set_step(i, self.steps)
            loss = F.cross_entropy(net.head(net.features(x, self.cut)), y)
            opt.opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.opt.step()
            return loss.detach()
        run_steps(self.steps, step, epoch=0, clock=clock, batch=len(keep), emit=emit, should_stop=should_stop,
                  lrs=lambda: tuple(pg["lr"] for pg in opt.opt.param_groups))
        net.requires_grad_(False)
        with torch.no_grad():
            pred = torch.cat([net.head(net.features(self.val[i:i + 512].float(), self.cut)).argmax(1)
                              for i in range(0, len(self.val), 512)])
        return float((pred.cpu() == val_y).float().mean())


# --- the run ---------------------------------------------------------------------------------------
def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.pstdev(values), "low": min(values),
            "high": max(values)}


def _acc(pred, y: np.ndarray) -> float:
    return float((np.asarray(pred) == y).mean())


def one_draw(codes, px: tuple[np.ndarray, np.ndarray], tuner: FineTuner, keep: torch.Tensor, seed: int,
             emit, should_stop, clock: Clock) -> dict[str, float]:
    """Every learner's validation accuracy from the same k images per class (`keep`)."""
    d = codes.prepared.data
    ty, vy, kn = d.train_y.numpy(), d.val_y.numpy(), keep.numpy()
    return {"prototypes": _acc(prototype_predict(codes.train[kn], ty[kn], codes.val, d.num_classes), vy),
            "logreg": _acc(logreg_predict(codes.train[kn], ty[kn], codes.val), vy),
            "fine_tune": tuner.accuracy(keep, d.val_y, emit, should_stop, clock),
            "pixels": _acc(fit_predict("pixel_svm", px[0][kn], ty[kn], px[1], seed)[0], vy)}


def ks_to_run(asked: list[int], train_y: torch.Tensor, n_classes: int) -> tuple[list[int], list[int], int]:
    """(the ks the smallest class can give, those it cannot, its size): a webcam class of two shots
    keeps one for validation, so it can only be learned one-shot."""
    smallest = int(torch.bincount(train_y, minlength=n_classes).min())
    return [k for k in asked if k <= smallest], [k for k in asked if k > smallest], smallest


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        o = options(plan)
        prepared = prepare(plan, emit, should_stop)
        d = prepared.data
        scope.keep(classes=tuple(d.classes))
        codes = frozen_codes(prepared, emit, should_stop)
        emit(started(prepared, codes.net))
        ks, skipped, smallest = ks_to_run(o["ks"], d.train_y, d.num_classes)
        emit(LabResult(SETUP, {"smallest_class": smallest, "skipped": ",".join(map(str, skipped)),
                               "layer": codes.layer}))
        if not ks:
            raise Failed(f"the smallest class has {smallest} training image{'s' if smallest != 1 else ''}, "
                         f"fewer than every k asked for ({', '.join(map(str, o['ks']))})")
        px = (pixel_features(d.train_x), pixel_features(d.val_x))
        tuner = FineTuner(codes, d.train_y, plan, o["steps"])
        total, done = len(ks) * o["draws"], 0
        table: dict[int, dict[str, dict[str, float]]] = {}
        for k in ks:
            accs: dict[str, list[float]] = {a: [] for a in ARMS}
            for r in range(o["draws"]):
                check_stop(should_stop)
                emit(Phase(f"k = {k} per class · draw {r + 1} of {o['draws']}", done, total))
                keep = subsample(d.train_y, d.num_classes, k, 1.0, draw_seed(plan.seed, k, r))
                row = one_draw(codes, px, tuner, keep, plan.seed, emit, should_stop,
                               Clock(scope.t0, done * o["steps"], total * o["steps"]))
                for a in ARMS:
                    accs[a].append(row[a])
                done += 1
                emit(LabResult(DRAW, {"k": k, "draw": r, **row}))
            table[k] = {a: _spread(v) for a, v in accs.items()}
            for a in ARMS:
                emit(LabResult(ARM, {"arm": a, "k": k, **table[k][a], "draws": len(accs[a])}))
        emit(Metrics({f"{a}_k{k}": table[k][a]["mean"] for k in (ks[0], ks[-1]) for a in ARMS}))


register_kind(Kind(KIND, "Few-shot learning", run, validate=validate, results=(SETUP, ARM, DRAW), unit="draw"))


# --- reading a run back ----------------------------------------------------------------------------
def curves(results) -> dict[str, list[dict]]:
    """arm -> its rows (k, mean, sd, low, high, draws), by rising k."""
    out: dict[str, list[dict]] = {a: [] for a in ARMS}
    for r in results:
        if r.schema == ARM:
            out.setdefault(r.values["arm"], []).append(dict(r.values))
    return {a: sorted(v, key=lambda row: row["k"]) for a, v in out.items() if v}


def setup(results) -> dict | None:
    return next((dict(r.values) for r in results if r.schema == SETUP), None)


def draws(results) -> list[dict]:
    return [dict(r.values) for r in results if r.schema == DRAW]


def findings(results, n_classes: int) -> list[str]:
    """What the run showed, in words, from its own numbers."""
    c = curves(results)
    if not c.get("prototypes"):
        return []
    chance = 1 / max(n_classes, 1)
    lo, hi = c["prototypes"][0]["k"], c["prototypes"][-1]["k"]
    at = {a: {row["k"]: row for row in rows} for a, rows in c.items()}
    said = []
    p1 = at["prototypes"][lo]
    said.append(f"With {lo} image{'s' if lo != 1 else ''} per class, the prototypes on CNN codes reached "
                f"{p1['mean']:.3f} (draws {p1['low']:.3f}-{p1['high']:.3f}); guessing would get {chance:.3f}.")
    best_lo = max(ARMS, key=lambda a: at[a][lo]["mean"])
    said.append(f"At k = {lo} the best learner was {TITLES[best_lo]} ({at[best_lo][lo]['mean']:.3f}); "
                + ", ".join(f"{TITLES[a]} {at[a][lo]['mean']:.3f}" for a in ARMS if a != best_lo) + ".")
    if hi != lo:
        best_hi = max(ARMS, key=lambda a: at[a][hi]["mean"])
        if best_hi == "prototypes":
            said.append(f"At k = {hi} the prototypes were still the best ({at['prototypes'][hi]['mean']:.3f}): with "
                        "codes this good for your images, averaging is all the learning needed.")
        else:
            said.append(f"At k = {hi} the best was {TITLES[best_hi]} ({at[best_hi][hi]['mean']:.3f}); the prototypes "
                        f"had {at['prototypes'][hi]['mean']:.3f}.")
        shrink = [a for a in ARMS if at[a][hi]["high"] - at[a][hi]["low"] < at[a][lo]["high"] - at[a][lo]["low"]]
        if shrink:
            said.append(f"The spread over draws narrowed from k = {lo} to k = {hi} for "
                        f"{len(shrink)} of {len(ARMS)} learners: with more images, which ones were drawn matters less.")
    return said


# --- the plan the page and the command line build -------------------------------------------------------
def lab_plan(*, dataset: str = "digits", dataset_path: str = "", dataset_name: str = "",
             model: str = "efficientnet_lite0", image_size: int = IMAGE_SIZE, seed: int = 0,
             per_class: int | None = None, **opts: Any):
    """A few-shot plan: the top group's input cached, the fine-tuning arm at FINE_TUNE_LR (constant).
    `per_class` bounds the pool the k images are drawn from (None: every training image), which keeps
    the one feature pass short on a large set."""
    from ..train.plan import Plan
    return Plan(kind=KIND, dataset=dataset, dataset_path=dataset_path, dataset_name=dataset_name, model=model,
                image_size=image_size, seed=seed, per_class=per_class, strategy="fine_tune_top", top_groups=1,
                lr=FINE_TUNE_LR,
                schedule="constant", options={**DEFAULTS, **opts})


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, not {text!r}") from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--dataset", default="digits", help="dataset name, or folder with --dataset-path (default digits)")
    p.add_argument("--dataset-path", default="", help="a zip or directory of class folders (--dataset folder)")
    p.add_argument("--ks", type=_ints, default=d["ks"], metavar="K,K,...",
                   help=f"images per class to learn from (default {','.join(map(str, d['ks']))})")
    p.add_argument("--draws", type=int, default=d["draws"], help=f"draws of the k images per k (default {d['draws']})")
    p.add_argument("--steps", type=int, default=d["steps"], help=f"fine-tuning steps per draw (default {d['steps']})")
    p.add_argument("--model", default="efficientnet_lite0", help="the CNN, from `python -m tlcore models`")
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"side in px (default {IMAGE_SIZE})")
    p.add_argument("--pool", type=int, default=None, metavar="N",
                   help="draw from at most N training images per class (default: all)")
    p.add_argument("--seed", type=int, default=0)


def summary(run, notes=None) -> dict[str, Any]:
    c, s = curves(run.results), setup(run.results) or {}
    ks = [row["k"] for row in next(iter(c.values()), [])]
    return {"kind": KIND, "dataset": run.plan.dataset, "model": run.plan.model, "k": ks,
            "accuracy": {a: {"mean": [round(r["mean"], 4) for r in rows], "sd": [round(r["sd"], 4) for r in rows]}
                         for a, rows in c.items()},
            "draws": run.plan.option("draws", DEFAULTS["draws"]), "skipped_k": s.get("skipped", ""),
            "status": run.status, "seconds": round(run.ended.seconds, 3) if run.ended else None}


def _run_command(args: argparse.Namespace) -> int:
    from ..cli import run_plan_here
    plan = lab_plan(dataset=args.dataset, dataset_path=args.dataset_path, model=args.model,
                    image_size=args.image_size, seed=args.seed, per_class=args.pool, ks=args.ks, draws=args.draws,
                    steps=args.steps)
    return run_plan_here(plan, summary)


def _register_command() -> None:
    from ..cli import Command, register_command
    register_command(Command("few-shot", "few-shot learning: accuracy against k images per class, four learners",
                             _add_arguments, _run_command,
                             description="Learn each class from k = 1, 2, 5, ... training images (several draws "
                                         "each) with prototypes and a logistic regression on frozen CNN codes, "
                                         "fine-tuning of the top group, and an SVM on pixels; print one JSON line."))


_register_command()
