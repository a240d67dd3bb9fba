"""The forgetting lab computed the straightforward way: the reference its fast path is timed and
checked against (tests/test_forgetting.py; the lab's row in tlcore.bench.labs).

Each arm runs the whole network on raw images at every training step, every validation pass and
every skill measurement, in plain fp32 for the skill: no cached features at a cut, no inference
copy of the backbone, no outputs of the start network stored for the arms that leave its lower
groups alone. The arms, their rates, BatchNorm modes, batches and the crops are the lab's own
(tlcore.labs.forgetting, tlcore.labs.old_skill), so the final rows are the same quantities.
Only the "imagenet" measure (the page's default); a sequential run is the lab's alone.
"""
from __future__ import annotations

import dataclasses

import torch

from ..models.build import imagenet_network
from ..train import rng
from ..train.phases import Clock, Source, build, evaluate, make_optimiser, prepare, train_epoch
from ..train.pipeline import Preprocess
from ..train.strategies import apply_cut, cut_schedule, set_batchnorm_training, steps_per_epoch
from . import old_skill
from .forgetting import ARMS, DEFAULTS, arm_plan


@torch.no_grad()
def answers(net, head, prep, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Top-1 answers of `net`'s backbone under `head`, the whole network in inference mode, fp32."""
    net.eval()
    head.eval()
    return torch.cat([head(net.features(prep(images[i:i + batch]))).argmax(1).cpu()
                      for i in range(0, len(images), batch)])


def run(plan, crops_per_photo: int | None = None) -> dict[str, dict]:
    """arm -> {"target_acc", "skill_kept"} after its last epoch, for a forgetting plan."""
    if plan.option("measure", DEFAULTS["measure"]) != "imagenet":
        raise ValueError("the plain reference measures the ImageNet answers only")
    bn_stats = plan.option("bn_stats", DEFAULTS["bn_stats"])
    prepared = prepare(plan, lambda e: None)
    policy, data = prepared.policy, prepared.data
    original = imagenet_network(plan.model).to(policy.device).eval()
    prep = Preprocess(old_skill.CROP_SIZE, prepared.spec.mean, prepared.spec.std, policy)
    crops = old_skill.photo_crops(crops_per_photo or old_skill.CROPS_PER_PHOTO, old_skill.CROP_SIZE)
    expected = answers(original, original.head, prep, crops)
    rows = {}
    for arm in ARMS:
        here = dataclasses.replace(prepared, plan=arm_plan(plan, arm))
        torch.manual_seed(plan.seed)
        net = build(here)
        optim = make_optimiser(net, here.plan, policy)
        gen = rng.generator(plan.seed, rng.SHUFFLE)
        steps = steps_per_epoch(len(data.train_y), plan.batch_size)
        for epoch, cut in enumerate(cut_schedule(here.plan, len(net.group_names))):
            apply_cut(net, cut, "frozen")
            src = Source(cut, data.train_x, data.val_x, False)     # raw images through every group, every time
            if arm == "bn_only":
                set_batchnorm_training(net.groups, True)
            elif bn_stats == "frozen":
                set_batchnorm_training(net, False)
            train_epoch(net, src, optim, here, epoch, Clock(0.0, epoch * steps, plan.epochs * steps), gen,
                        lambda e: None)
            acc = float((evaluate(net, src, here).pred == data.val_y).float().mean())
            kept = float((answers(net, original.head, prep, crops) == expected).float().mean())
        rows[arm] = {"target_acc": acc, "skill_kept": kept}
    return rows
