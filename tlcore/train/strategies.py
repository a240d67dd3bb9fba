"""What each strategy freezes, epoch by epoch, and how a frozen group behaves.

A strategy is reduced to one number per epoch, the *cut*: groups below it are frozen, groups from
it up train (with the head). Everything else (caching, optimiser groups, events) follows from it.
"""
from __future__ import annotations

from torch import nn

from ..models.base import Network
from .plan import Plan


def cut_schedule(plan: Plan, n_groups: int) -> tuple[int, ...]:
    """Index of the lowest trainable group for each epoch (n_groups: only the head trains)."""
    s = plan.strategy
    if s == "feature_extractor":
        return (n_groups,) * plan.epochs
    if s == "fine_tune_top":
        return (n_groups - plan.top_groups,) * plan.epochs
    if s in ("fine_tune_all", "scratch"):
        return (0,) * plan.epochs
    if s == "gradual_unfreeze":
        # ULMFiT: the head alone first, then one more group from the top each epoch.
        return tuple(max(n_groups - e, 0) for e in range(plan.epochs))
    raise ValueError(f"strategy {s!r} does not train a network")


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def set_batchnorm_training(module: nn.Module, training: bool) -> None:
    """Every BatchNorm layer inside `module` in training mode (its running statistics follow the batches
    it sees) or in inference mode (they stay as they are); nothing else changes mode."""
    for m in module.modules():
        if isinstance(m, _BN):
            m.train(training)


def apply_cut(net: Network, cut: int, bn_policy: str) -> None:
    """Freeze groups below `cut`, make the rest trainable, and put every module in the right mode.

    Frozen BatchNorm stays in inference mode under the "frozen" policy (Keras' rule: its running
    statistics are ImageNet's and a small batch of new data would corrupt them). Under "train"
    (fastai's default) BN's affine parameters keep learning inside frozen groups.
    """
    net.train()
    for i, group in enumerate(net.groups.values()):
        frozen = i < cut
        group.requires_grad_(not frozen)
        if frozen:
            group.eval()
            if bn_policy == "train":
                for m in group.modules():
                    if isinstance(m, _BN):
                        m.train()
                        m.requires_grad_(True)
    net.head.requires_grad_(True)
    if net.aux is not None:   # Inception's auxiliary head learns with the group it taps
        net.aux.requires_grad_(cut <= net.aux_after)


def frozen_groups_are_fixed(plan: Plan, cut: int) -> bool:
    """The groups below the cut compute the same function all run (BN policy "train" lets them learn)."""
    return cut > 0 and plan.bn == "frozen"


def frozen_prefix_is_fixed(plan: Plan, cut: int) -> bool:
    """The frozen groups also see the same inputs every epoch (no augmentation), so their outputs can be cached."""
    return frozen_groups_are_fixed(plan, cut) and not plan.augment



def planned_lrs(plan: Plan, n_groups: int, steps_per_epoch: int):
    """[steps, n_groups + 1] learning rates the run will use (head last); 0 where a group is frozen.

    The Train page draws this before a run starts; the loop uses the same schedule and scales.
    """
    import numpy as np

    from .schedules import curve, plan_params

    total = steps_per_epoch * plan.epochs
    lrs = curve(plan.schedule, total, plan.lr, n_groups + 1, plan.discriminative_factor, **plan_params(plan))
    cuts = np.repeat(np.array(cut_schedule(plan, n_groups)), steps_per_epoch)
    frozen = np.arange(n_groups + 1)[None, :] < cuts[:, None]
    return np.where(frozen, 0.0, lrs)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    # Drop a last batch of one: BatchNorm cannot train on a single sample.
    bs = min(batch_size, n_train)
    full, rest = divmod(n_train, bs)
    return full + (1 if rest >= 2 else 0) if full else 1


# --- a freeze switch per layer group (the Model page): Keras's `layer.trainable`, kept to a top block ---
def lowest_trained(plan: Plan) -> int | None:
    """The lowest kept group the plan trains from the first epoch (None: the head alone)."""
    n = len(plan.kept_groups)
    first = cut_schedule(plan, n)[0]
    return first if first < n else None


def toggle_group(plan: Plan, index: int, train: bool) -> dict:
    """The plan fields after switching group `index` (of the kept groups, bottom = 0) to trained or frozen.

    Transfer learning trains a top block: switching a group on trains it and every group above; switching
    it off freezes it and every group below. For feature_extractor / fine_tune_top / fine_tune_all plans."""
    n = len(plan.kept_groups)
    low = lowest_trained(plan)
    if train:
        low = index if low is None else min(low, index)
    else:
        low = None if index + 1 >= n else max(index + 1, low if low is not None else n)
    if low is None:
        return {"strategy": "feature_extractor"}
    if low == 0 and not plan.truncate_after:
        return {"strategy": "fine_tune_all"}
    return {"strategy": "fine_tune_top", "top_groups": n - low}
