"""How long a run has left, and what its speed figures mean: pure functions of the plan and events.

An epoch's cost depends on its *cut* (which layer groups train): with gradual unfreezing the
head-only first epoch can be a thousand times cheaper than the last, so extrapolating from the
current epoch is useless. We measure the seconds per optimiser step of each cut the run has
trained so far and scale to cuts not yet seen by their work per image, from the forward MFLOPs
of each layer group: forward and backward (about 3x forward) through the trainable groups, plus a
forward through the frozen ones unless their outputs are cached (then a one-off feature pass for
each new cut), and each epoch's evaluation: a forward pass over the validation images. Until the
run has measured what it needs, the answer is None ("estimating…").

FLOPs are a poor guide from a cut that trains little to one that trains much: gradual unfreezing
measures the head-only top group first, and a training step through Lite0's stages costs far more
per MFLOP than one through its top 1x1 convolution (depthwise convolutions are memory-bound). The
estimate was half the truth in epoch 2 ("about 17 s left" with 77 s to go). A cut whose work is
far from every measured one is scaled instead from the feature pass's measured forward rate.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from .kinds import KINDS
from .train.events import EpochEnded, Event, LabResult, Phase, RunEnded, RunStarted, Step
from .train.plan import Plan
from .train.strategies import cut_schedule, frozen_prefix_is_fixed

BACKWARD_FACTOR = 3.0     # forward + backward costs about three forwards
# A training step through a group against the feature pass's forward through it (no autograd, bf16 where
# the CPU has it): 4.3-5.0 measured for Lite0's stage3/stage4 on a Zen 5 core at 64 and 128 px.
TRAIN_OVER_FEATURE_PASS = 4.5
FAR = 2.0                 # a measured cut whose work differs by more than this factor is too far to scale from


def cuts_of(plan: Plan, started: RunStarted | None) -> tuple[int, ...]:
    """The lowest trainable group of every epoch, from the run if it said, else from the plan."""
    if started is None or not plan.uses_network:
        return ()
    return tuple(started.cuts) or cut_schedule(plan, len(started.groups))


def step_seconds(steps: Sequence[Step], batch_size: int, train_size: int) -> dict[int, float]:
    """Measured seconds per optimiser step, per epoch that has steps.

    From the run's clock (`Step.elapsed`) across two reports of the same epoch when it has them,
    else from the epoch's stepping speed (`Step.images_per_s`, which leaves feature passes out)."""
    by_epoch: dict[int, list[Step]] = defaultdict(list)
    for s in steps:
        by_epoch[s.epoch].append(s)
    out: dict[int, float] = {}
    for epoch, group in by_epoch.items():
        first, last = group[0], group[-1]
        if last.step > first.step and last.elapsed > first.elapsed > 0:
            out[epoch] = (last.elapsed - first.elapsed) / (last.step - first.step)
        elif last.images_per_s > 0 and last.steps_per_epoch > 0:
            k = last.step - epoch * last.steps_per_epoch + 1           # steps done in this epoch
            images = min(k * batch_size, train_size) if train_size else k * batch_size
            out[epoch] = images / last.images_per_s / max(k, 1)
    return out


def work_per_image(cut: int, group_mflops: Sequence[float], cached: bool) -> float:
    """MFLOPs one training image costs at this cut (the head's share is too small to count)."""
    trained = BACKWARD_FACTOR * sum(group_mflops[cut:])
    return trained + (0.0 if cached else sum(group_mflops[:cut]))


def _cost_per_cut(plan: Plan, cuts: Sequence[int], measured: dict[int, float],
                  mflops: Sequence[float], batch: int = 0, feature_rate: float | None = None) -> dict[int, float] | None:
    """Seconds per step for every cut still to come, or None if some cannot be estimated yet.

    `feature_rate` (seconds per MFLOP per image of a measured feature pass) prices a cut whose work is
    more than FAR from every measured cut's; otherwise the most similar measured cut is scaled by work."""
    by_cut = {cuts[e]: s for e, s in sorted(measured.items()) if e < len(cuts)}
    work = {c: work_per_image(c, mflops, frozen_prefix_is_fixed(plan, c)) if mflops else None for c in set(cuts)}
    anchors = [(c, s) for c, s in by_cut.items() if work[c]]
    out = dict(by_cut)
    for c in set(cuts) - set(by_cut):
        if work[c] is None or not anchors:
            return None
        if work[c] == 0:                      # head only on cached features: as cheap as anything measured
            out[c] = min(by_cut.values())
            continue
        ref, secs = min(anchors, key=lambda a: abs(work[a[0]] - work[c]))   # the most similar cut measured
        out[c] = secs * work[c] / work[ref]
        if feature_rate and batch and not 1 / FAR <= work[c] / work[ref] <= FAR:
            trained = sum(mflops[c:]) * TRAIN_OVER_FEATURE_PASS
            frozen = 0.0 if frozen_prefix_is_fixed(plan, c) else sum(mflops[:c])
            out[c] = max(out[c], batch * (trained + frozen) * feature_rate)
    return out


def _measured_feature_rate(started: RunStarted, cuts: Sequence[int], epochs: Sequence[EpochEnded]) -> float | None:
    """Seconds per MFLOP per image of the latest feature pass the run measured (None before one)."""
    mflops, images = started.group_mflops, started.train_size + started.val_size
    for e in reversed(epochs):
        work = images * sum(mflops[:cuts[e.epoch]]) if mflops and e.epoch < len(cuts) else 0
        if e.feature_seconds > 0 and work > 0:
            return e.feature_seconds / work
    return None


def _evaluation_seconds(plan: Plan, started: RunStarted, cuts: Sequence[int], epochs: range,
                        rate: float | None) -> float:
    """Each epoch ends with a forward pass over the validation images through the groups it trains
    (and the frozen ones too when their outputs are not cached)."""
    mflops = started.group_mflops
    if not mflops or rate is None:
        return 0.0
    total = 0.0
    for e in epochs:
        c = cuts[e]
        work = sum(mflops[c:]) + (0.0 if frozen_prefix_is_fixed(plan, c) else sum(mflops[:c]))
        total += started.val_size * work * rate
    return total


def _feature_pass_seconds(plan: Plan, started: RunStarted, cuts: Sequence[int], epoch: int,
                          seconds_per_mflop: float | None) -> float | None:
    """One forward through the frozen groups for every image, for each coming epoch that opens a new cut."""
    total, mflops = 0.0, started.group_mflops
    images = started.train_size + started.val_size
    for e in range(epoch + 1, len(cuts)):
        c = cuts[e]
        if c == cuts[e - 1] or not frozen_prefix_is_fixed(plan, c):
            continue
        if not mflops or seconds_per_mflop is None:
            return None
        total += images * sum(mflops[:c]) * seconds_per_mflop
    return total


def _forward_rate(plan: Plan, started: RunStarted, cuts: Sequence[int], epochs: Sequence[EpochEnded],
                  per_step: dict[int, float], batch: int) -> float | None:
    """Seconds per MFLOP per image: from a measured feature pass if any, else from training steps."""
    mflops, images = started.group_mflops, started.train_size + started.val_size
    if not mflops:
        return None
    for e in reversed(epochs):
        work = images * sum(mflops[:cuts[e.epoch]]) if e.epoch < len(cuts) else 0
        if e.feature_seconds > 0 and work > 0:
            return e.feature_seconds / work
    for epoch, secs in per_step.items():
        work = batch * work_per_image(cuts[epoch], mflops, frozen_prefix_is_fixed(plan, cuts[epoch]))
        if work > 0:
            return secs / work
    return None


def time_left(plan: Plan, started: RunStarted | None, steps: Sequence[Step],
              epochs: Sequence[EpochEnded] = ()) -> float | None:
    """Seconds of training still to do, or None while it cannot be estimated ("estimating…")."""
    cuts = cuts_of(plan, started)
    if not steps or not cuts or started is None:
        return None
    last = steps[-1]
    spe = last.steps_per_epoch or started.steps_per_epoch
    if spe <= 0 or last.epoch >= len(cuts):
        return None
    batch = min(plan.batch_size, started.train_size) if started.train_size else plan.batch_size
    per_step = step_seconds(steps, plan.batch_size, started.train_size)
    costs = _cost_per_cut(plan, cuts, per_step, started.group_mflops, batch,
                          _measured_feature_rate(started, cuts, epochs))
    if costs is None or cuts[last.epoch] not in costs:
        return None
    left = max((last.epoch + 1) * spe - (last.step + 1), 0) * costs[cuts[last.epoch]]
    left += sum(spe * costs[cuts[e]] for e in range(last.epoch + 1, len(cuts)))
    rate = _forward_rate(plan, started, cuts, epochs, per_step, batch)
    passes = _feature_pass_seconds(plan, started, cuts, last.epoch, rate)
    if passes is None:
        return None
    return left + passes + _evaluation_seconds(plan, started, cuts, range(last.epoch, len(cuts)), rate)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:,.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"


def left_text(seconds: float | None) -> str:
    return "estimating time left…" if seconds is None else f"about {duration(seconds)} left"


def done_so_far(plan: Plan, events: Sequence[Event]) -> tuple[int, str]:
    """How much of a run is done and in what: a lab's summary rows, counted in its kind's unit (labs emit
    no EpochEnded: counting epochs said "0 of 8 epochs" after every arm had trained), else epochs ("")."""
    kind = KINDS.get(plan.kind)
    if kind is not None and kind.unit and kind.results:
        return sum(isinstance(e, LabResult) and e.schema == kind.results[-1] for e in events), kind.unit
    return sum(isinstance(e, EpochEnded) for e in events), ""


def ended_text(ended: RunEnded, done: int, plan: Plan, unit: str = "") -> str:
    """The progress line once a run is over: what happened, not the last thing it was doing.

    `done` counts epochs, or with a `unit` (see done_so_far) what a lab ran: "Finished: 3 arms in 41 s"."""
    took = duration(ended.seconds)
    if unit:
        ran = f"{done} {unit}{'s' if done != 1 else ''}"
    elif not plan.uses_network:
        return {"finished": f"Finished: the SVM was fitted in {took}", "stopped": f"Stopped after {took}",
                "failed": "Failed"}[ended.status]
    else:
        ran = f"{done} of {plan.epochs} epoch{'s' if plan.epochs != 1 else ''}"
    return {"finished": f"Finished: {ran} in {took}", "stopped": f"Stopped after {ran} ({took})",
            "failed": f"Failed after {ran}"}[ended.status]


def speed_figures(e: EpochEnded) -> list[tuple[str, str]]:
    """(label, value) for what an epoch's speed really measured.

    A head trained on cached features steps through thousands of "images" a second, which says
    nothing about the network: show the backbone's feature pass and the head's steps apart."""
    head_only = not e.trainable_groups
    out: list[tuple[str, str]] = []
    if e.feature_images_per_s > 0:
        out.append(("Backbone images/s (feature pass)", f"{e.feature_images_per_s:,.0f}"))
    elif e.feature_cache_hit:
        out.append(("Backbone features", "from the cache"))
    if head_only:
        if e.steps_per_s > 0:
            out.append(("Head steps/s", f"{e.steps_per_s:,.1f}"))
        elif not out:
            out.append(("Head images/s (on stored features)", f"{e.images_per_s:,.0f}"))
    else:
        out.append(("Training images/s", f"{e.images_per_s:,.0f}"))
    return out


# --- a lab that fine-tunes from each cut in turn ("Fine-tune from each cut") --------------------------
def _cut_work(i: int, mflops: Sequence[float], train: int, val: int, epochs: int, cached: bool) -> float:
    """MFLOP-images of fine-tuning from cut i+1: the frozen prefix's pass (once when cached), the
    trained groups forward and backward for every epoch, and the evaluation."""
    cut = i + 1
    frozen, trained = sum(mflops[:cut]), sum(mflops[cut:])
    prefix = (train + val) * frozen if cached else (epochs * train + val) * frozen
    # Against the feature pass (inference mode), training costs TRAIN_OVER_FEATURE_PASS forwards, not 3:
    # priced at 3 the cheap top cuts, mostly feature passes, took half what the first cuts predicted.
    return prefix + epochs * train * TRAIN_OVER_FEATURE_PASS * trained + val * trained


def cuts_time_left(plan: Plan, started: RunStarted | None, events: Sequence[Event]) -> float | None:
    """Seconds left of a run that fine-tunes from every cut, bottom to top (one summary row per cut,
    with its seconds): each cut still to come priced by its work at the seconds per MFLOP-image the
    latest finished cut took (or, during the first, its own steps), the current one by its steps left.

    It showed no time left at all: 230 s of runs with only "Fine-tuning from each cut in turn"."""
    if started is None or not started.group_mflops:
        return None
    mflops, n = started.group_mflops, len(started.group_mflops)
    epochs = int(plan.option("epochs", 1))
    cached = frozen_prefix_is_fixed(plan, 1)
    def work(i: int) -> float:
        return _cut_work(i, mflops, started.train_size, started.val_size, epochs, cached)
    rows = [e.values for e in events if isinstance(e, LabResult) and {"index", "seconds"} <= set(e.values)]
    done = {int(r["index"]) for r in rows}
    current = len(done)
    if current >= n:
        return 0.0
    steps = [e for e in events if isinstance(e, Step)]
    if rows:   # the latest cut: the first one, cold and training the big early maps, costs more per MFLOP
        rate = rows[-1]["seconds"] / max(work(int(rows[-1]["index"])), 1e-9)
    else:   # the first cut, before it has finished: from its own steps
        per_step = step_seconds(steps, plan.batch_size, started.train_size)
        if not per_step or not steps:
            return None
        batch = min(plan.batch_size, started.train_size)
        trained = TRAIN_OVER_FEATURE_PASS * sum(mflops[1:]) + (0.0 if cached else sum(mflops[:1]))
        rate = max(per_step.values()) / max(batch * trained, 1e-9)
    # The share of the current cut's steps done, if the latest Step is this cut's (after the latest row).
    last_step = max((k for k, e in enumerate(events) if isinstance(e, Step)), default=-1)
    last_row = max((k for k, e in enumerate(events) if isinstance(e, LabResult)), default=-1)
    in_cut = 0.0
    if last_step > last_row:
        s = events[last_step]
        in_cut = min((s.step + 1) / max(s.total_steps, 1), 1.0)
    left = work(current) * rate * (1.0 - in_cut)
    return left + sum(work(i) * rate for i in range(current + 1, n))



def run_time_left(plan: Plan, started: RunStarted | None, events: Sequence[Event], steps: Sequence[Step],
                  epochs: Sequence[EpochEnded]) -> float | None:
    """Time left of any run the progress line shows: one that fine-tunes from each cut in turn (its
    "cut" phases) by its cuts, else by its epochs' cuts (time_left)."""
    if any(isinstance(e, Phase) and e.name == "cut" for e in events):
        return cuts_time_left(plan, started, events)
    return time_left(plan, started, steps, epochs)
