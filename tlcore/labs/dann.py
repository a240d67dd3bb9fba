"""Domain adaptation by gradient reversal (Ganin & Lempitsky 2015), as a run of its own kind.

One run trains three arms on the same data, one after the other, so they can be drawn side by side:
  source_only   labels from the source, nothing about the target (the floor)
  dann          labels from the source, plus a domain classifier behind a gradient reversal layer
                fed unlabelled target images (its weight follows lambda(p) = 2/(1+exp(-10p)) - 1)
  target_only   labels from the target itself (the ceiling; DANN never sees these labels)
Every arm has the domain classifier; in source_only and target_only its reversed gradient is
weighted 0, so it only *measures* how well the features tell the domains apart.
After each epoch each arm reports source accuracy, target accuracy and domain accuracy (the
domain classifier on held-out images of both domains; 0.5 means it cannot tell them apart).

Two networks: the paper's small CNN trained whole (options.network = "small_cnn", the default), or
a zoo backbone (options.network = "backbone", plan.model): its groups below `head_at` frozen and
computed once for both domains, the group `head_at` trained, and the two heads on its pooled output.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.phases import prepare, started
from ..train.scope import Failed, RunScope, check_stop
from .grl import GradientReversal, dann_lambda, dann_lr

ARMS = ("source_only", "dann", "target_only")
ARM_TITLES = {"source_only": "Source only", "dann": "DANN", "target_only": "Target labels (ceiling)"}
MIN_SIZE, MAX_SIZE = 16, 64        # the small CNN: below 16 px its two pools leave nothing; above 64 use a zoo model
MIN_PER_CLASS = 5                  # fewer training images per class than this cannot show anything
DEFAULT_SIZE = 32
# Scales the paper's lambda(p). On a few hundred digits and a few hundred steps the full weight
# lets the domain head win the tug of war (domain accuracy swings below 0.5: features flipped, not mixed).
DOMAIN_WEIGHT = 0.3
EMBED_POINTS = 300                 # per domain, in the embedding view
NETWORKS = ("small_cnn", "backbone")

EPOCH = register_schema("dann_epoch", {"arm": str, "epoch": int, "source_acc": float, "target_acc": float,
                                       "domain_acc": float, "lambda": float})
FINAL = register_schema("dann", {"arm": str, "source_acc": float, "target_acc": float, "domain_acc": float,
                                 "seconds": float})


# --- network ----------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """The paper's MNIST network: two conv/pool blocks as the feature extractor, a three-layer label
    classifier and a two-layer domain classifier behind the gradient reversal layer."""

    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.Dropout2d(0.1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        with torch.no_grad():
            dim = self.features(torch.zeros(2, 3, size, size)).shape[1]
        self.label = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                                   nn.Linear(100, classes))
        self.grl = GradientReversal(0.0)
        self.domain = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 2))

    def forward(self, x):
        f = self.features(x)
        return f, self.label(f), self.domain(self.grl(f))


def min_side_for_small_cnn() -> int:
    return MIN_SIZE


class BackboneDANN(nn.Module):
    """One group of a zoo backbone (its input: the frozen groups' cached output), pooled, then the
    same two heads as the small CNN."""

    def __init__(self, group: nn.Module, sample: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(group, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            was = group.training
            dim = self.features.eval()(sample[:1]).shape[1]
            group.train(was)
        self.label = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, classes))
        self.grl = GradientReversal(0.0)
        self.domain = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 2))

    forward = SmallCNN.forward


@dataclass
class Arms:
    """What every arm trains on: both domains in the network's input space, a way to make a fresh
    network, and the batch transform from stored tensors to that input."""
    src: object            # ImageSplits (train_x/val_x: raw uint8 images or cached prefix outputs)
    tgt: object
    make_net: Callable[[], nn.Module]
    encode: Callable[[torch.Tensor], torch.Tensor]


# --- options ----------------------------------------------------------------------------------------
def validate(plan) -> None:
    from ..data import DATASETS
    opts = dict(plan.options)
    network = opts.get("network", "small_cnn")
    if network not in NETWORKS:
        raise PlanError("options.network", f"choose {' or '.join(NETWORKS)}")
    known = {"target", "arms", "domain_weight", "network"} | ({"size"} if network == "small_cnn" else {"head_at"})
    extra = sorted(set(opts) - known)
    if extra:
        raise PlanError(f"options.{extra[0]}", f"the dann kind with network {network} takes {', '.join(sorted(known))}")
    target = opts.get("target", "digits_m")
    if target not in DATASETS:
        raise PlanError("options.target", f"unknown dataset {target!r}; choose one of {', '.join(sorted(DATASETS))}")
    if target == plan.dataset and plan.dataset != "folder":
        raise PlanError("options.target", "the target must be another dataset than the source (e.g. digits_m)")
    src, tgt = DATASETS[plan.dataset].classes, DATASETS[target].classes
    if src and tgt and tuple(src) != tuple(tgt):
        raise PlanError("options.target", f"{DATASETS[target].title} has other classes than {DATASETS[plan.dataset].title}: "
                                          "domain adaptation needs the same classes on both sides, only their look differs")
    w = opts.get("domain_weight", DOMAIN_WEIGHT)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 10:
        raise PlanError("options.domain_weight", "must be a number from 0 to 10 (1: the paper's lambda schedule as is)")
    arms = opts.get("arms", list(ARMS))
    if not isinstance(arms, (list, tuple)) or not arms or any(a not in ARMS for a in arms):
        raise PlanError("options.arms", f"choose some of {', '.join(ARMS)}")
    if network == "backbone":
        _head_index(plan)    # raises a PlanError naming the groups
        return _check_per_class(plan)
    size = opts.get("size", DEFAULT_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise PlanError("options.size", f"the small CNN of the paper takes {MIN_SIZE} to {MAX_SIZE} px images (its two "
                                      f"5x5 convolutions and pools need {MIN_SIZE} px at least); got {size}")
    _check_per_class(plan)


def _check_per_class(plan) -> None:
    if plan.per_class is not None and plan.per_class < MIN_PER_CLASS:
        raise PlanError("per_class", f"needs at least {MIN_PER_CLASS} images per class on each side")


def default_head_at(model: str) -> str:
    """The group two thirds of the way up: high enough to hold digit shapes, low enough to adapt."""
    from ..models import MODELS
    names = MODELS[model].group_names
    return names[min(len(names) - 1, (2 * len(names)) // 3)]


def _head_index(plan) -> int:
    from ..models import MODELS
    names = MODELS[plan.model].group_names
    at = plan.option("head_at", default_head_at(plan.model))
    if at not in names:
        raise PlanError("options.head_at", f"{MODELS[plan.model].title} has the groups {', '.join(names)}; "
                                           f"the DANN heads sit on one of them, not {at!r}")
    return names.index(at)


# --- data ---------------------------------------------------------------------------------------------
def _target_data(plan, size: int):
    from ..data import load_dataset
    return load_dataset(plan.option("target", "digits_m"), image_size=size, per_class=plan.per_class,
                        seed=plan.seed)


def _check_data(src, tgt) -> None:
    if tuple(src.classes) != tuple(tgt.classes):
        raise Failed(f"the target's classes ({', '.join(tgt.classes)}) differ from the source's "
                     f"({', '.join(src.classes)}): domain adaptation needs the same classes on both sides")
    for name, d in (("source", src), ("target", tgt)):
        counts = torch.bincount(d.train_y, minlength=d.num_classes)
        if int(counts.min()) < MIN_PER_CLASS:
            raise Failed(f"the {name} has only {int(counts.min())} training images in a class; "
                         f"it needs at least {MIN_PER_CLASS} per class")
        if d.val_y.numel() < d.num_classes:
            raise Failed(f"the {name} has too few validation images to score anything")


def _input(x: torch.Tensor, size: int, device) -> torch.Tensor:
    x = x.to(device).float().div_(255)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


# --- one arm --------------------------------------------------------------------------------------------
@torch.no_grad()
def _features_and_scores(net: nn.Module, x: torch.Tensor, encode, batch: int = 512):
    net.eval()
    feats, labels, doms = [], [], []
    for i in range(0, len(x), batch):
        f, y, d = net(encode(x[i:i + batch]))
        feats.append(f.cpu()), labels.append(y.argmax(1).cpu()), doms.append(d.argmax(1).cpu())
    return torch.cat(feats), torch.cat(labels), torch.cat(doms)


def _scores(net, arms: Arms) -> tuple[float, float, float]:
    src, tgt = arms.src, arms.tgt
    _, ys, ds = _features_and_scores(net, src.val_x, arms.encode)
    _, yt, dt = _features_and_scores(net, tgt.val_x, arms.encode)
    # Domain accuracy balanced over the two domains, so a classifier that always says "source" scores 0.5.
    dom = 0.5 * ((ds == 0).float().mean() + (dt == 1).float().mean())
    return float((ys == src.val_y).float().mean()), float((yt == tgt.val_y).float().mean()), float(dom)


def small_cnn_arms(src, tgt, size: int, device) -> Arms:
    return Arms(src, tgt, lambda: SmallCNN(size, src.num_classes).to(device), lambda x: _input(x, size, device))


def train_arm(arm: str, plan, arms: Arms, emit, should_stop) -> nn.Module:
    src, tgt = arms.src, arms.tgt
    g = torch.Generator().manual_seed(plan.seed)
    torch.manual_seed(plan.seed)
    net = arms.make_net()
    # One rate for all, the pretrained group included: at a tenth for it (a fine-tuning habit) DANN's
    # target accuracy on digits -> digits_m stayed at source-only's (0.437 vs 0.432, Lite0 stage3,
    # 60 per class, 8 epochs); at the full rate it rose above it (0.490 vs 0.476).
    opt = torch.optim.SGD(net.parameters(), lr=plan.lr, momentum=0.9, weight_decay=plan.weight_decay)
    labelled = tgt if arm == "target_only" else src
    bs = plan.batch_size
    steps_per_epoch = max(1, math.ceil(len(labelled.train_y) / bs))
    total = plan.epochs * steps_per_epoch
    t_last = 0.0
    weight = float(plan.option("domain_weight", DOMAIN_WEIGHT))
    for epoch in range(plan.epochs):
        net.train()
        order_l = torch.randperm(len(labelled.train_y), generator=g)
        n_other = len(tgt.train_y) if arm != "target_only" else len(src.train_y)
        order_o = torch.randperm(n_other, generator=g).repeat(math.ceil(len(order_l) / n_other) + 1)
        for s in range(steps_per_epoch):
            check_stop(should_stop)
            step = epoch * steps_per_epoch + s
            p = step / total
            lam = weight * dann_lambda(p) if arm == "dann" else 0.0
            for group in opt.param_groups:
                group["lr"] = dann_lr(p, plan.lr)
            net.grl.lam = lam
            il = order_l[s * bs:(s + 1) * bs]
            io = order_o[s * bs:s * bs + len(il)]
            if arm == "target_only":
                xs, xt = src.train_x[io], tgt.train_x[il]
                yl = tgt.train_y[il]
            else:
                xs, xt = src.train_x[il], tgt.train_x[io]
                yl = src.train_y[il]
            x = torch.cat([arms.encode(xs), arms.encode(xt)])
            device = x.device
            _, logits, dom = net(x)
            n_s = len(xs)
            lab_logits = logits[n_s:] if arm == "target_only" else logits[:n_s]
            d_true = torch.cat([torch.zeros(n_s, dtype=torch.long), torch.ones(len(xt), dtype=torch.long)]).to(device)
            loss = F.cross_entropy(lab_logits, yl.to(device)) + F.cross_entropy(dom, d_true)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            now = time.monotonic()
            if now - t_last > 0.25 or step == total - 1:
                t_last = now
                emit(Phase(arm, step + 1, total))
        sa, ta, da = _scores(net, arms)
        emit(LabResult(EPOCH, {"arm": arm, "epoch": epoch, "source_acc": sa, "target_acc": ta, "domain_acc": da,
                               "lambda": dann_lambda((epoch + 1) / plan.epochs) if arm == "dann" else 0.0}))
    return net


def _embedding(net, arms: Arms, seed: int) -> dict:
    """The features of held-out source and target images in 2-D, for the before/after view: the
    same projection as Inside the CNN's map of CNN codes (tlcore.inspect.embed_2d, PCA)."""
    from ..inspect import embed_2d
    src, tgt = arms.src, arms.tgt
    g = torch.Generator().manual_seed(seed)
    i_s = torch.randperm(len(src.val_y), generator=g)[:EMBED_POINTS]
    i_t = torch.randperm(len(tgt.val_y), generator=g)[:EMBED_POINTS]
    fs, _, _ = _features_and_scores(net, src.val_x[i_s], arms.encode)
    ft, _, _ = _features_and_scores(net, tgt.val_x[i_t], arms.encode)
    xy = torch.from_numpy(embed_2d(torch.cat([fs, ft]).float().numpy(), "pca", seed)).float()
    return {"xy": xy, "domain": torch.cat([torch.zeros(len(fs)), torch.ones(len(ft))]).long(),
            "label": torch.cat([src.val_y[i_s], tgt.val_y[i_t]])}


def backbone_arms(plan, prepared, src, tgt, emit, should_stop) -> tuple[Arms, nn.Module]:
    """A zoo backbone's groups below `head_at`, frozen: computed once over both domains (the same
    rule as a feature extractor's cache), so each arm trains only group `head_at` and the heads."""
    from ..train.features import compute_prefix
    from ..train.phases import FEATURE_BATCH, build
    net = build(prepared, emit)
    at, policy = _head_index(plan), prepared.policy
    batch = FEATURE_BATCH.get(policy.device.type, 64)
    parts = [src.train_x, src.val_x, tgt.train_x, tgt.val_x]
    total, done, out = sum(len(x) for x in parts), 0, []
    for x in parts:
        def tell(n, _all, base=done):
            emit(Phase("features", base + n, total))
            check_stop(should_stop)
        out.append(compute_prefix(net, x, at, prepared.prep, policy, batch, tell))
        done += len(x)
    s_tr, s_va, t_tr, t_va = out
    src_f = dataclasses.replace(src, train_x=s_tr, val_x=s_va)
    tgt_f = dataclasses.replace(tgt, train_x=t_tr, val_x=t_va)
    group = list(net.groups.values())[at]
    device = policy.device

    def make_net() -> nn.Module:
        return BackboneDANN(copy.deepcopy(group), s_tr[:1].to(device).float(), src.num_classes).to(device)
    return Arms(src_f, tgt_f, make_net, lambda x: x.to(device).float()), net


# --- the run ----------------------------------------------------------------------------------------------
def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        prepared = prepare(plan, emit, should_stop)
        backbone = plan.option("network", "small_cnn") == "backbone"
        size = prepared.size if backbone else plan.option("size", DEFAULT_SIZE)
        src = prepared.data
        emit(Phase("target data", 0, 1))
        tgt = _target_data(plan, size)
        emit(Phase("target data", 1, 1))
        _check_data(src, tgt)
        scope.keep(classes=tuple(src.classes))
        if backbone:
            arms, net = backbone_arms(plan, prepared, src, tgt, emit, should_stop)
            emit(started(prepared, net))
        else:
            arms = small_cnn_arms(src, tgt, size, prepared.policy.device)
            emit(started(prepared, None))
        embeddings, finals = {}, {}
        for arm in plan.option("arms", ARMS):
            t0 = time.perf_counter()
            net = train_arm(arm, plan, arms, emit, should_stop)
            sa, ta, da = _scores(net, arms)
            finals[arm] = {"source_acc": sa, "target_acc": ta, "domain_acc": da}
            emit(LabResult(FINAL, {"arm": arm, **finals[arm], "seconds": time.perf_counter() - t0}))
            if arm in ("source_only", "dann"):
                embeddings[arm] = _embedding(net, arms, plan.seed)
                scope.keep(extra={"embedding.pt": dict(embeddings)})
        emit(Metrics({f"{arm}_{k}": v for arm, r in finals.items() for k, v in r.items()}))


register_kind(Kind("dann", "Domain adaptation (DANN)", run, validate=validate, results=(EPOCH, FINAL)))


# --- the command line ---------------------------------------------------------------------------------------
def _add_arguments(p) -> None:
    p.add_argument("--source", default="digits", help="labelled source dataset (default digits)")
    p.add_argument("--target", default="digits_m", help="target dataset whose labels training never sees "
                                                        "(default digits_m; mnist_m with --source mnist)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--per-class", type=int, default=None, help="training images per class on each side")
    p.add_argument("--image-size", type=int, default=DEFAULT_SIZE)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="the starting rate, annealed as in the paper (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default=None, metavar="MODEL",
                   help="a zoo model instead of the paper's small CNN: its groups below --head-at frozen, "
                        "that group trained (default: the small CNN)")
    p.add_argument("--head-at", default=None, metavar="GROUP",
                   help="with --backbone: the group whose output feeds both heads (default: two thirds up)")


def make_plan(source="digits", target="digits_m", epochs=10, per_class=None, image_size=DEFAULT_SIZE, batch_size=64,
              lr=0.05, seed=0, device="auto", arms=ARMS, domain_weight=DOMAIN_WEIGHT, backbone=None, head_at=None):
    from ..train.plan import Plan
    if backbone:
        # A zoo backbone: the plan's own model and image size, checked against the model's as for any run.
        options = {"target": target, "arms": list(arms), "domain_weight": domain_weight, "network": "backbone",
                   "head_at": head_at or default_head_at(backbone)}
        return Plan(kind="dann", dataset=source, model=backbone, image_size=image_size, options=options,
                    epochs=epochs, per_class=per_class, batch_size=batch_size, lr=lr, seed=seed, device=device,
                    strategy="feature_extractor", weight_decay=5e-4)
    # The small CNN's side lives in the options: the plan's image_size is checked against the zoo model's.
    return Plan(kind="dann", dataset=source, options={"target": target, "arms": list(arms), "size": image_size,
                                                 "domain_weight": domain_weight},
                epochs=epochs, per_class=per_class, batch_size=batch_size, lr=lr, seed=seed, device=device,
                strategy="scratch", weight_decay=5e-4)


def _run_command(args) -> int:
    from ..cli import run_plan_here
    plan = make_plan(args.source, args.target, args.epochs, args.per_class, args.image_size, args.batch_size,
                     args.lr, args.seed, args.device, backbone=args.backbone, head_at=args.head_at)

    def summary(run, notes):
        out = {"run_id": run.id, "status": run.status, "source": plan.dataset, "target": plan.option("target"),
               "network": plan.model + "@" + plan.option("head_at") if plan.option("network") == "backbone" else "small_cnn",
               "epochs": plan.epochs, "seconds": round(run.ended.seconds, 3) if run.ended else None}
        for row in run.results:
            if row.schema == FINAL:
                v = row.values
                out[v["arm"]] = {k: round(v[k], 4) for k in ("source_acc", "target_acc", "domain_acc")}
        out["message"] = run.message
        return out
    return run_plan_here(plan, summary)


from ..cli import Command, register_command  # noqa: E402
register_command(Command("dann", "domain adaptation: source only vs DANN vs target labels, one JSON line",
                         _add_arguments, _run_command,
                         "Train the paper's small CNN three ways on a labelled source and an unlabelled target."))
