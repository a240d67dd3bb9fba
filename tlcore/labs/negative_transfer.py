"""Negative transfer (Wang et al. 2019): does a source help this target, or hurt it?

The same target data, with and without each source, over several seeds. With a source, a frozen
EfficientNet-Lite0 gives features and a logistic regression is fitted on them:
  imagenet      the backbone as it ships
  misleading    the backbone first fine-tuned by us on a task that teaches nothing useful (random
                labels on photo patches), then used the same way
  random_init   the same architecture with random weights
Without a source: the paper's small CNN trained from scratch on the target, and an SVM on raw pixels.
The gap is Wang et al.'s: target error with the source minus target error without it (> 0: it hurt).
"""
from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..data import load_plan_data
from ..train.phases import build, prepare, started
from ..train.scope import RunScope, check_stop

SOURCES = ("imagenet", "misleading", "random_init")
WITHOUT = ("scratch", "pixel_svm")
TITLES = {"imagenet": "ImageNet backbone", "misleading": "Misleading source (random labels first)",
          "random_init": "Random init backbone", "scratch": "Small CNN from scratch", "pixel_svm": "SVM on pixels"}
MISLEAD_STEPS = 40
SCRATCH_EPOCHS = 6

RUN = register_schema("negative_transfer_run", {"arm": str, "seed": int, "target_acc": float})
GAP = register_schema("negative_transfer_gap", {"source": str, "acc_mean": float, "acc_std": float,
                                                "gap_vs_scratch": float, "gap_vs_pixel_svm": float,
                                                "gap_std": float, "seeds": int})


def validate(plan) -> None:
    opts = dict(plan.options)
    extra = sorted(set(opts) - {"seeds"})
    if extra:
        raise PlanError(f"options.{extra[0]}", "the negative_transfer kind takes: seeds")
    seeds = opts.get("seeds", 3)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise PlanError("options.seeds", "must be a whole number from 1 to 10")
    if plan.per_class is not None and plan.per_class < 5:
        raise PlanError("per_class", "needs at least 5 images per class")


@torch.no_grad()
def _features(net, prep, x, batch=128) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, len(x), batch):
        f = net.features(prep(x[i:i + batch]))
        out.append((f.mean((2, 3)) if f.dim() == 4 else f).float().cpu())
    return torch.cat(out).numpy()


def _probe(net, prepared, seed) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    d = prepared.data
    tr, va = _features(net, prepared.prep, d.train_x), _features(net, prepared.prep, d.val_x)
    sc = StandardScaler().fit(tr)
    clf = LogisticRegression(max_iter=500, C=0.5, random_state=seed).fit(sc.transform(tr), d.train_y.numpy())
    return float((clf.predict(sc.transform(va)) == d.val_y.numpy()).mean())


def _pixel_svm(d, seed) -> float:
    from sklearn.svm import LinearSVC
    x = lambda t: t.float().div(255).flatten(1).numpy()   # noqa: E731
    clf = LinearSVC(C=0.1, random_state=seed, max_iter=5000).fit(x(d.train_x), d.train_y.numpy())
    return float((clf.predict(x(d.val_x)) == d.val_y.numpy()).mean())


def _mislead(net, prepared, seed, should_stop, emit) -> None:
    """Fine-tune every layer on random labels of photo patches: a source task with nothing to teach."""
    from ..data.shifted import TRAIN_PHOTOS, blend
    g = torch.Generator().manual_seed(seed)
    side = prepared.size
    head = torch.nn.Linear(net.feature_dim, 10).to(prepared.policy.device)
    opt = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-3)
    net.train()
    for step in range(MISLEAD_STEPS):
        check_stop(should_stop)
        blank = torch.zeros(32, 3, side, side, dtype=torch.uint8)
        x = blend(blank, TRAIN_PHOTOS, seed * 1000 + step).images   # plain photo patches
        y = torch.randint(0, 10, (32,), generator=g).to(prepared.policy.device)
        f = net.features(prepared.prep(x))
        f = f.mean((2, 3)) if f.dim() == 4 else f
        loss = F.cross_entropy(head(f), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        emit(Phase("misleading source", step + 1, MISLEAD_STEPS))


def _scratch(plan, d, seed, device, emit, should_stop) -> float:
    from .dann_arms import scores, small_cnn_arms, train_arm
    p = plan.replace(seed=seed, epochs=SCRATCH_EPOCHS, lr=0.05, batch_size=32)
    arms = small_cnn_arms(d, d, 32, device)
    net = train_arm("target_only", p, arms, lambda e: None, should_stop)
    return scores(net, arms)[1]


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        emit(started(prepared, None))
        seeds = [plan.seed + i for i in range(plan.option("seeds", 3))]
        accs: dict[str, list[float]] = {a: [] for a in (*SOURCES, *WITHOUT)}
        total, done = len(seeds) * 5, 0
        for seed in seeds:
            # Each seed draws its own training images as well as its own weights and splits of work.
            splan = plan.replace(seed=seed)
            here = dataclasses.replace(prepared, plan=splan, data=load_plan_data(splan))
            for arm in (*SOURCES, *WITHOUT):
                check_stop(should_stop)
                emit(Phase(arm, done, total))
                if arm == "pixel_svm":
                    acc = _pixel_svm(here.data, seed)
                elif arm == "scratch":
                    acc = _scratch(plan, here.data, seed, here.policy.device, emit, should_stop)
                else:
                    net = build(here, pretrained=arm != "random_init")
                    if arm == "misleading":
                        _mislead(net, here, seed, should_stop, emit)
                    acc = _probe(net, here, seed)
                accs[arm].append(acc)
                done += 1
                emit(LabResult(RUN, {"arm": arm, "seed": seed, "target_acc": acc}))
        for src in SOURCES:
            gaps_s = [(1 - a) - (1 - b) for a, b in zip(accs[src], accs["scratch"])]
            gaps_p = [(1 - a) - (1 - b) for a, b in zip(accs[src], accs["pixel_svm"])]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0   # noqa: E731
            emit(LabResult(GAP, {"source": src, "acc_mean": statistics.mean(accs[src]), "acc_std": sd(accs[src]),
                                 "gap_vs_scratch": statistics.mean(gaps_s), "gap_vs_pixel_svm": statistics.mean(gaps_p),
                                 "gap_std": sd(gaps_s), "seeds": len(seeds)}))
        emit(Metrics({f"{a}_acc": statistics.mean(v) for a, v in accs.items()}))


register_kind(Kind("negative_transfer", "Negative transfer", run, validate=validate, results=(RUN, GAP), unit="source"))


def make_plan(dataset="digits", per_class=20, seeds=3, image_size=32, seed=0):
    from ..train.plan import Plan
    return Plan(kind="negative_transfer", dataset=dataset, per_class=per_class, image_size=image_size, seed=seed,
                options={"seeds": seeds}, strategy="feature_extractor")


# --- the command line ---------------------------------------------------------------------------------------
def _add_arguments(p) -> None:
    p.add_argument("--dataset", default="digits", help="the target dataset (default digits)")
    p.add_argument("--per-class", type=int, default=20, help="training images per class (default 20)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm, 1 to 10 (default 3): mean and spread")
    p.add_argument("--image-size", type=int, default=32, help="side in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")


def summary(run, notes=None) -> dict:
    """The page's numbers as one dict: each arm's accuracy over the seeds and each source's gap."""
    runs = [r.values for r in run.results if r.schema == RUN]
    arms = {}
    for arm in (*SOURCES, *WITHOUT):
        accs = [v["target_acc"] for v in runs if v["arm"] == arm]
        if accs:
            arms[arm] = {"acc_mean": round(statistics.mean(accs), 4),
                         "acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0}
    gaps = {v["source"]: {k: round(v[k], 4) for k in ("gap_vs_scratch", "gap_vs_pixel_svm", "gap_std")}
            for r in run.results if r.schema == GAP for v in [r.values]}
    plan = run.plan
    return {"run_id": run.id, "status": run.status, "kind": "negative_transfer", "dataset": plan.dataset,
            "per_class": plan.per_class, "seeds": plan.option("seeds", 3), "arms": arms, "gaps": gaps,
            "seconds": round(run.ended.seconds, 3) if run.ended else None, "message": run.message}


def _run_command(args) -> int:
    from ..cli import run_plan_here
    plan = make_plan(args.dataset, args.per_class, args.seeds, args.image_size, args.seed)
    return run_plan_here(plan, summary)


from ..cli import Command, register_command  # noqa: E402
register_command(Command("negative-transfer", "negative transfer: each source against none, over seeds, one JSON line",
                         _add_arguments, _run_command,
                         "Fit the same target with and without each source (ImageNet, a misleading source, "
                         "random init) over several seeds; the gap is target error with the source minus "
                         "without it (above 0: the source hurt)."))
