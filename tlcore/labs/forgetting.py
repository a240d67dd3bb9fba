"""Catastrophic forgetting: fine-tune a pretrained network on a new target and watch, epoch by epoch,
how much of what it knew survives, beside the target accuracy (lecture notes: overly aggressive
fine-tuning forgets; too cautious fine-tuning learns slowly; gradual unfreezing is the remedy).

Every arm starts from the same pretrained network with a new head and trains on the same target
batches; after each epoch the target's validation accuracy and the old skill (tlcore.labs.old_skill)
are measured. The arms:
  aggressive      every group at the head's rate (HIGH)
  cautious        every group at LOW
  discriminative  every group, each one 2.6x lower than the one above, from HIGH at the head
  gradual         ULMFiT's gradual unfreezing from the top, discriminative rates from HIGH
  bn_only         no backbone weight changes: only the head trains while every BatchNorm layer
                  updates its statistics on the target, which is what "BN updated" does by itself
The BatchNorm policy is the run's control: statistics frozen (every BN layer normalises with its
ImageNet statistics; its scale and shift still learn where the group trains) or updated on the
target (the trainable groups' BN layers in training mode, PyTorch's default).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import torch

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train import rng
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import Clock, Source, build, evaluate, make_optimiser, prepare, source_at, started, train_epoch
from ..train.scope import Failed, RunScope, check_stop
from ..train.strategies import apply_cut, cut_schedule, set_batchnorm_training, steps_per_epoch
from ..cli import Command, register_command
from . import old_skill

HIGH, LOW, FACTOR = 1e-3, 1e-5, 2.6
ARMS = ("aggressive", "cautious", "discriminative", "gradual", "bn_only")
TITLES = {"aggressive": f"Every group at {HIGH:g}", "cautious": f"Every group at {LOW:g}",
          "discriminative": f"Discriminative rates ({HIGH:g} at the head, /{FACTOR} per group)",
          "gradual": "Gradual unfreezing (from the top, discriminative rates)",
          "bn_only": "BatchNorm statistics only (head trains, no backbone weight changes)"}
BN_STATS = ("frozen", "updated")
MEASURES = ("imagenet", "sequential")
MEASURE_TITLES = {"imagenet": "its own ImageNet answers on bundled photos",
                  "sequential": "a first task learned in the run (the plan's dataset), while a second one trains"}
SECOND = "digits_m"      # sequential: the second task (the same digits on photos), learned after the first
FIRST_EPOCHS = 2         # sequential: the first task's fine-tuning (every group, discriminative rates)
# The page's controls, the CLI's defaults and the lesson test read these. 20 per class and 3 epochs (from
# 30 and 4: training was half the run) keep a press near 20 s on 2 cores; the lesson holds there
# (tests/lessons/test_forgetting_lesson.py), not at 15 per class or at 48 px (gradual's accuracy lags).
DEFAULTS = {"dataset": "digits", "model": "efficientnet_lite0", "image_size": 64, "per_class": 20, "epochs": 3,
            "batch_size": 32, "seed": 0, "bn_stats": "frozen", "measure": "imagenet"}

EPOCH = register_schema("forgetting_epoch", {"arm": str, "epoch": int, "target_acc": float, "skill_kept": float})
ARM = register_schema("forgetting_arm", {"arm": str, "target_acc": float, "skill_kept": float, "seconds": float})


def validate(plan) -> None:
    opts = dict(plan.options)
    extra = sorted(set(opts) - {"bn_stats", "measure", "second"})
    if extra:
        raise PlanError(f"options.{extra[0]}", "the forgetting kind takes: bn_stats, measure, second")
    second = opts.get("second", SECOND)
    from ..data.registry import DATASETS
    if not isinstance(second, str) or second not in DATASETS:
        raise PlanError("options.second", f"must be a dataset name (e.g. {SECOND})")
    if opts.get("measure") == "sequential" and second == plan.dataset:
        raise PlanError("options.second", "the second task must be another dataset than the first")
    if opts.get("bn_stats", "frozen") not in BN_STATS:
        raise PlanError("options.bn_stats", f"must be one of {', '.join(BN_STATS)}")
    if opts.get("measure", "imagenet") not in MEASURES:
        raise PlanError("options.measure", f"must be one of {', '.join(MEASURES)}")
    if not plan.pretrained:
        raise PlanError("model", "forgetting needs a pretrained network: random weights know nothing to forget")
    if not 1 <= plan.epochs <= 10:
        raise PlanError("epochs", "must be from 1 to 10 for this lab (every arm trains this many)")


def arm_plan(plan, arm: str):
    """The plan one arm trains with: its strategy, rates and factor; a constant rate, so that what
    differs between arms is only what the arm is about."""
    base = plan.replace(kind="train", options={}, schedule="constant", head="linear")
    if arm == "aggressive":
        return base.replace(strategy="fine_tune_all", lr=HIGH, factor=1.0)
    if arm == "cautious":
        return base.replace(strategy="fine_tune_all", lr=LOW, factor=1.0)
    if arm == "discriminative":
        return base.replace(strategy="fine_tune_all", lr=HIGH, factor=FACTOR)
    if arm == "gradual":
        return base.replace(strategy="gradual_unfreeze", lr=HIGH, factor=FACTOR)
    if arm == "bn_only":
        return base.replace(strategy="feature_extractor", lr=HIGH, factor=FACTOR)
    raise ValueError(f"unknown arm {arm!r}")


def _source(net, cut: int, arm: str, here, emit, should_stop, start: dict | None = None) -> Source:
    """What the trainable part reads. BN statistics that update in a frozen part need the raw images
    through it every step (no cached features), and so does a network that no longer has its
    pretrained weights (`start`): the feature cache knows features by the weights' file."""
    d = here.data
    if arm == "bn_only" or start is not None:
        return Source(cut, d.train_x, d.val_x, False)
    return source_at(net, cut, here, default_cache(), emit, should_stop)


def train_arm(i: int, arm: str, prepared, skill, bn_stats: str, emit, should_stop, t0: float,
              start: dict | None = None):
    """One arm from the pretrained network (or from `start`, its layer groups' weights after a first task):
    its per-epoch rows emitted; returns (its final row, the network)."""
    plan = prepared.plan
    here = dataclasses.replace(prepared, plan=arm_plan(plan, arm))
    torch.manual_seed(plan.seed)
    net = build(here)
    if start is not None:
        net.groups.load_state_dict(start)
    n = len(net.group_names)
    optim = make_optimiser(net, here.plan, here.policy)
    cuts = cut_schedule(here.plan, n)
    gen = rng.generator(plan.seed, rng.SHUFFLE)          # every arm sees the same batches
    steps = steps_per_epoch(len(here.data.train_y), plan.batch_size)     # as train_epoch takes them
    val_y = here.data.val_y
    t = time.perf_counter()
    acc = kept = 0.0
    # Groups below `untouched` are still those the skill remembered (the start network's): none where
    # every BatchNorm layer follows the target, else those below the lowest cut so far.
    untouched = 0 if arm == "bn_only" else n
    for epoch, cut in enumerate(cuts):
        untouched = min(untouched, cut)
        check_stop(should_stop)
        emit(Phase(f"arm {i + 1} of {len(ARMS)}: {TITLES[arm]} · epoch {epoch + 1} of {plan.epochs}",
                   i * plan.epochs + epoch, len(ARMS) * plan.epochs))
        apply_cut(net, cut, "frozen")
        src = _source(net, cut, arm, here, emit, should_stop, start)
        if arm == "bn_only":
            set_batchnorm_training(net.groups, True)     # every BN layer follows the target's statistics; no weight trains
        elif bn_stats == "frozen":
            set_batchnorm_training(net, False)           # ImageNet's statistics everywhere; BN's scale and shift still learn
        train_epoch(net, src, optim, here, epoch, Clock(t0, epoch * steps, plan.epochs * steps), gen, emit,
                    should_stop)
        ev = evaluate(net, src, here, should_stop)
        acc = float((ev.pred == val_y).float().mean())
        # (the first task of a sequential run has no skill to keep yet)
        kept = skill.kept(net, untouched) if skill is not None else float("nan")
        emit(LabResult(EPOCH, {"arm": arm, "epoch": epoch, "target_acc": acc, "skill_kept": kept}))
    return {"arm": arm, "target_acc": acc, "skill_kept": kept, "seconds": time.perf_counter() - t}, net


def frozen_cuts(plan, n_groups: int) -> tuple[int, ...]:
    """The cuts below which an arm trains from the start network's groups unchanged (gradual unfreezing's,
    one per epoch): the skill stores the start network's outputs there once, and the arm reads them."""
    return tuple(sorted({c for c in cut_schedule(arm_plan(plan, "gradual"), n_groups) if c > 0}))


def imagenet_answers(original, prepared, crops_per_photo: int | None = None, keep=()) -> old_skill.Skill:
    """The pretrained network's own top-1 answers on the bundled photos' crops, read by its classifier;
    its outputs at the cuts in `keep` stored for the arms that leave the groups below unchanged."""
    from ..train.pipeline import Preprocess
    spec = prepared.spec
    prep = Preprocess(old_skill.CROP_SIZE, spec.mean, spec.std, prepared.policy)
    crops = old_skill.photo_crops(crops_per_photo or old_skill.CROPS_PER_PHOTO, old_skill.CROP_SIZE)
    return old_skill.imagenet_skill(original, original.head, prep, crops, keep)


def _first_task(prepared, bn_stats: str, emit, should_stop, t0: float):
    """Sequential: the pretrained network fine-tuned on the first task (every group, discriminative rates,
    FIRST_EPOCHS epochs); returns (its layer groups' weights, the skill: its validation images, their
    labels and its head)."""
    first = dataclasses.replace(prepared, plan=prepared.plan.replace(epochs=FIRST_EPOCHS))
    emit(Phase(f"the first task: {prepared.plan.dataset}", 0, len(ARMS) * prepared.plan.epochs))
    _, net = train_arm(0, "discriminative", first, None, bn_stats, lambda e: None, should_stop, t0)
    head = copy.deepcopy(net.head).eval()
    skill = old_skill.Skill(prepared.data.val_x, prepared.data.val_y, head, prepared.prep, "first task")
    # Where every arm starts, read the way the arms are (the same pass stores the outputs gradual reads).
    first = skill.remember(net, frozen_cuts(prepared.plan, len(net.group_names)))
    emit(Metrics({"first_task_acc": float((first == skill.answers).float().mean())}))
    return {k: v.detach().clone() for k, v in net.groups.state_dict().items()}, skill


def run(plan, emit, should_stop, artifact_dir):
    from ..models.build import imagenet_network
    with RunScope(plan, emit, artifact_dir) as scope:
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        emit(started(prepared, None))
        t0 = time.perf_counter()
        bn_stats = plan.option("bn_stats", DEFAULTS["bn_stats"])
        start = None
        if plan.option("measure", DEFAULTS["measure"]) == "sequential":
            start, skill = _first_task(prepared, bn_stats, emit, should_stop, t0)
            # The second task's data; the plan's options without `measure`, which would read it as a first task.
            prepared = prepare(plan.replace(dataset=plan.option("second", SECOND), options={"bn_stats": bn_stats}),
                               emit, should_stop)
        else:
            try:
                original = imagenet_network(plan.model).to(prepared.policy.device).eval()
            except Exception as e:   # weights that are not on this machine: say so, once
                raise Failed(f"{plan.model}'s ImageNet classifier is needed to measure what it forgets: {e}") from e
            emit(Phase("the ImageNet answers to keep", 0, len(ARMS) * plan.epochs))
            skill = imagenet_answers(original, prepared, keep=frozen_cuts(plan, len(original.group_names)))
        for i, arm in enumerate(ARMS):
            row, _ = train_arm(i, arm, prepared, skill, bn_stats, emit, should_stop, t0, start)
            emit(LabResult(ARM, row))


def _network(plan) -> str:
    return f"{plan.model}, every arm"


register_kind(Kind("forgetting", "Catastrophic forgetting", run, validate=validate, results=(EPOCH, ARM), unit="arm",
                   network=_network))


# --- reading a run back --------------------------------------------------------------------------------
def curves(run) -> dict[str, list[dict]]:
    """arm -> its epochs in order: target accuracy and skill kept."""
    out: dict[str, list[dict]] = {}
    for r in run.results:
        if r.schema == EPOCH:
            out.setdefault(r.values["arm"], []).append(r.values)
    return {a: sorted(v, key=lambda e: e["epoch"]) for a, v in out.items()}


def finals(run) -> dict[str, dict]:
    """arm -> its last epoch's target accuracy and skill kept."""
    return {a: v[-1] for a, v in curves(run).items() if v}


def skill_words(measure: str) -> str:
    return "of the ImageNet answers" if measure == "imagenet" else "accuracy on the first task"


def findings(rows: dict[str, dict], measure: str = "imagenet") -> list[str]:
    """What the run showed, in words, from its final numbers (only what the numbers say)."""
    if not rows:
        return []
    out, kept = [], skill_words(measure)
    least = min(rows, key=lambda a: rows[a]["skill_kept"])
    most = max((a for a in rows if a != "bn_only"), key=lambda a: rows[a]["skill_kept"], default=None)
    out.append(f"Kept the least: {TITLES[least]} ({rows[least]['skill_kept']:.0%} {kept}, "
               f"target accuracy {rows[least]['target_acc']:.3f}).")
    if most:
        out.append(f"Kept the most while training the backbone: {TITLES[most]} ({rows[most]['skill_kept']:.0%}, "
                   f"target accuracy {rows[most]['target_acc']:.3f}).")
    if "bn_only" in rows:
        out.append(f"BatchNorm statistics alone, with no backbone weight changed, kept "
                   f"{rows['bn_only']['skill_kept']:.0%} {kept}.")
    return out


def make_plan(**changes):
    from ..train.plan import Plan
    d = {**DEFAULTS, **changes}
    return Plan(kind="forgetting", dataset=d["dataset"], model=d["model"], image_size=d["image_size"],
                per_class=d["per_class"], epochs=d["epochs"], batch_size=d["batch_size"], seed=d["seed"],
                strategy="fine_tune_all", options={"bn_stats": d["bn_stats"], "measure": d["measure"]})


# --- the command line ------------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--measure", choices=MEASURES, default=d["measure"],
                   help=f"what the network knew before: imagenet, its own ImageNet answers on bundled photos; "
                        f"sequential, --dataset learned first in the run, then {SECOND} (default {d['measure']})")
    p.add_argument("--bn-stats", choices=BN_STATS, default=d["bn_stats"],
                   help=f"BatchNorm statistics while fine-tuning (default {d['bn_stats']})")
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"epochs per arm (default {d['epochs']})")
    p.add_argument("--dataset", default=d["dataset"], help=f"the target (default {d['dataset']})")
    p.add_argument("--per-class", type=int, default=d["per_class"],
                   help=f"target training images per class (default {d['per_class']})")
    p.add_argument("--image-size", type=int, default=d["image_size"], help=f"target side in px (default {d['image_size']})")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"(default {d['seed']})")


def summary(run, notes=None) -> dict:
    plan = run.plan
    sequential = plan.option("measure", DEFAULTS["measure"]) == "sequential"
    return {"run_id": run.id, "status": run.status, "kind": "forgetting", "dataset": plan.dataset,
            "second_task": plan.option("second", SECOND) if sequential else None,
            "first_task_acc": round(run.metrics.get("first_task_acc", float("nan")), 4) if sequential else None,
            "model": plan.model, "bn_stats": plan.option("bn_stats", DEFAULTS["bn_stats"]),
            "measure": plan.option("measure", DEFAULTS["measure"]), "epochs": plan.epochs,
            "arms": {a: [{"epoch": e["epoch"] + 1, "target_acc": round(e["target_acc"], 4),
                          "skill_kept": round(e["skill_kept"], 4)} for e in v] for a, v in curves(run).items()},
            "seconds": round(run.ended.seconds, 3) if run.ended else None, "message": run.message}


def _run_command(args) -> int:
    from ..cli import run_plan_here
    plan = make_plan(dataset=args.dataset, per_class=args.per_class, image_size=args.image_size, epochs=args.epochs,
                     seed=args.seed, bn_stats=args.bn_stats, measure=args.measure)
    return run_plan_here(plan, summary)


register_command(Command("forgetting", "catastrophic forgetting: target accuracy and skill kept per arm and epoch, "
                         "one JSON line", _add_arguments, _run_command,
                         "Fine-tune the same pretrained network on a target several ways (every group at a high "
                         "rate, at a low rate, discriminative rates, gradual unfreezing, BatchNorm statistics "
                         "only) and print, per arm and epoch, the target accuracy and the fraction of its own "
                         "ImageNet answers on bundled photos it still gives."))
