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
import time

import torch
from torch import nn

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.phases import prepare, started
from ..train.scope import Failed, RunScope, check_stop
from .dann_arms import ARM_TITLES  # noqa: F401  (the page names the arms through this module)
from .dann_arms import (DOMAIN_WEIGHT, EPOCH, MAX_SIZE, MIN_SIZE, Arms, BackboneDANN, features_and_scores, scores,
                        small_cnn_arms, train_arm)

ARMS = ("source_only", "dann", "target_only")
MIN_PER_CLASS = 5                  # fewer training images per class than this cannot show anything
DEFAULT_SIZE = 32
# What the page, the command line and the lessons test start from (one table, so they cannot drift).
# Batches of 32 per domain (19 steps an epoch, 152 in all) rather than 64: twice the updates for the
# same images; lr 0.01 is the paper's, annealed by dann_lr. Measured gains: tests/lessons/test_dann_lesson.py.
PAGE_EPOCHS, PAGE_PER_CLASS, PAGE_BATCH, PAGE_LR = 8, 60, 32, 0.01
BACKBONE_BATCH, BACKBONE_LR = 64, 0.05   # a zoo group under the heads keeps its earlier setting
EMBED_POINTS = 300                 # per domain, in the embedding view
NETWORKS = ("small_cnn", "backbone")

FINAL = register_schema("dann", {"arm": str, "source_acc": float, "target_acc": float, "domain_acc": float,
                                 "seconds": float})


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
    if not isinstance(target, str) or target not in DATASETS:   # a list or a number is no dataset name
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
    if model not in MODELS:   # asked before the plan is made, so the plan's own check comes too late
        raise PlanError("model", f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
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



def _embedding(net, arms: Arms, seed: int) -> dict:
    """The features of held-out source and target images in 2-D, for the before/after view: the
    same projection as Inside the CNN's map of CNN codes (tlcore.inspect.embed_2d, PCA)."""
    from ..inspect import embed_2d
    src, tgt = arms.src, arms.tgt
    g = torch.Generator().manual_seed(seed)
    i_s = torch.randperm(len(src.val_y), generator=g)[:EMBED_POINTS]
    i_t = torch.randperm(len(tgt.val_y), generator=g)[:EMBED_POINTS]
    fs, _, _ = features_and_scores(net, src.val_x[i_s], arms.encode)
    ft, _, _ = features_and_scores(net, tgt.val_x[i_t], arms.encode)
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
        embeddings, finals, names, t_run = {}, {}, plan.option("arms", ARMS), time.perf_counter()
        for i, arm in enumerate(names):
            t0 = time.perf_counter()
            net = train_arm(arm, plan, arms, emit, should_stop, position=(i, len(names)), t0=t_run)
            sa, ta, da = scores(net, arms)
            finals[arm] = {"source_acc": sa, "target_acc": ta, "domain_acc": da}
            emit(LabResult(FINAL, {"arm": arm, **finals[arm], "seconds": time.perf_counter() - t0}))
            if arm in ("source_only", "dann"):
                embeddings[arm] = _embedding(net, arms, plan.seed)
                scope.keep(extra={"embedding.pt": dict(embeddings)})
        emit(Metrics({f"{arm}_{k}": v for arm, r in finals.items() for k, v in r.items()}))


def train_images(plan, data):
    """What the host's image limit counts: the labelled source and the unlabelled target, both trained on."""
    from ..limits import TrainImages
    src = data()
    tgt = _target_data(plan, plan.resolved_image_size())
    return TrainImages(int(src.train_y.numel() + tgt.train_y.numel()), "per_class",
                       "images per class on each side (--per-class)", per_unit=src.num_classes + tgt.num_classes,
                       least=MIN_PER_CLASS)


register_kind(Kind("dann", "Domain adaptation (DANN)", run, validate=validate, results=(EPOCH, FINAL), unit="arm",
                   train_images=train_images,
                   network=lambda p: p.model if p.options.get("network") == "backbone" else "small CNN (random init)"))


# --- the command line ---------------------------------------------------------------------------------------
def _add_arguments(p) -> None:
    p.add_argument("--source", default="digits", help="labelled source dataset (default digits)")
    p.add_argument("--target", default="digits_m", help="target dataset whose labels training never sees "
                                                        "(default digits_m; mnist_m with --source mnist)")
    p.add_argument("--epochs", type=int, default=PAGE_EPOCHS, help=f"default {PAGE_EPOCHS}, as on the page")
    p.add_argument("--per-class", type=int, default=PAGE_PER_CLASS,
                   help=f"training images per class on each side (default {PAGE_PER_CLASS}, as on the page; 0: all)")
    p.add_argument("--image-size", type=int, default=DEFAULT_SIZE)
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per domain in a step (default {PAGE_BATCH}; {BACKBONE_BATCH} with --backbone)")
    p.add_argument("--lr", type=float, default=None, help=f"the starting rate, annealed as in the paper "
                                                          f"(default {PAGE_LR}; {BACKBONE_LR} with --backbone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default=None, metavar="MODEL",
                   help="a zoo model instead of the paper's small CNN: its groups below --head-at frozen, "
                        "that group trained (default: the small CNN)")
    p.add_argument("--head-at", default=None, metavar="GROUP",
                   help="with --backbone: the group whose output feeds both heads (default: two thirds up)")


def make_plan(source="digits", target="digits_m", epochs=PAGE_EPOCHS, per_class=PAGE_PER_CLASS, image_size=DEFAULT_SIZE,
              batch_size=None, lr=None, seed=0, device="auto", arms=ARMS, domain_weight=DOMAIN_WEIGHT, backbone=None,
              head_at=None):
    """The plan the page, the command line and the lessons test build; its defaults are the page's."""
    from ..train.plan import Plan
    batch_size = batch_size or (BACKBONE_BATCH if backbone else PAGE_BATCH)
    lr = lr or (BACKBONE_LR if backbone else PAGE_LR)
    if backbone:
        # A zoo backbone: the plan's own model and image size, checked against the model's as for any run.
        options = {"target": target, "arms": list(arms), "domain_weight": domain_weight, "network": "backbone",
                   "head_at": head_at or default_head_at(backbone)}
        return Plan(kind="dann", dataset=source, model=backbone, image_size=image_size, options=options,
                    epochs=epochs, per_class=per_class, batch_size=batch_size, lr=lr, seed=seed, device=device,
                    strategy="feature_extractor", weight_decay=5e-4)
    # The small CNN's side lives in the options: the plan's image_size is checked against the zoo model's.
    # It is still what `prepare` decodes the source at: left at 0 that was the zoo model's 224 px, every
    # batch then squeezed back to 32 (a 224-px copy of the digits, and slow). So: the side itself, or
    # the nearest the plan accepts (the small CNN then shrinks it further).
    from ..models import MODELS
    decode = max(image_size, MODELS[Plan.model].min_input_size) if isinstance(image_size, int) else image_size
    return Plan(kind="dann", dataset=source, options={"target": target, "arms": list(arms), "size": image_size,
                                                 "domain_weight": domain_weight}, image_size=decode,
                epochs=epochs, per_class=per_class, batch_size=batch_size, lr=lr, seed=seed, device=device,
                strategy="scratch", weight_decay=5e-4)


def _run_command(args) -> int:
    from ..cli import run_plan_here
    plan = make_plan(args.source, args.target, args.epochs, args.per_class or None, args.image_size, args.batch_size,
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
