"""Negative transfer (Wang et al. 2019): does a source help this target, or hurt it?

The same target data, with and without each source, over several seeds (each seed draws its own
target sample). With a source, a network gives features and a logistic regression learns the target's
classes from them:
  related      a small CNN taught the target's classes on other images of them, on photos (photo_sources)
  imagenet     EfficientNet-Lite0 as it ships, read at its middle group (CUT: the probe lab finds stage3
               suits digits; the top group is ImageNet-specific)
  misleading   the same small CNN on the same source images, taught which photo lies behind each one
  random_init  the same small CNN untrained: the architecture without a source
Without a source: the paper's small CNN trained from scratch on the target, and an SVM on raw pixels.
The gap is Wang et al.'s: target error with the source minus target error without it (> 0: it hurt).
A source's verdict is read against the STRONGER no-transfer arm (on 8x8 digits the pixel SVM), paired
per seed: beating the weaker baseline only would call a source helpful that a learner could beat
without it. Every source's features of the target pool are computed once per run (ImageNet's through
the engine's feature cache), so the run also sweeps the per-class count to say where the sign flips.

Why these sources (measured 2026-12-07, digits, 10/class, seeds 0-2, one thread): Lite0 fine-tuned on
random labels of noise images, this lab's earlier misleading source, hurt by +0.023 to +0.038 with a
spread as large (more steps did not hurt more); taught the photos behind the digits, the small CNN
hurts by +0.12 (spread 0.04), below the same network untrained: it learned to look at the wrong thing.
"""
from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import torch

from ..data.splits import subsample
from ..errors import PlanError
from ..inspect.core import pool
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import build, prepare, source_at, started
from ..train.scope import RunScope, check_stop
from . import photo_sources

SOURCES = ("related", "imagenet", "misleading", "random_init")
WITHOUT = ("scratch", "pixel_svm")
ARMS = (*SOURCES, *WITHOUT)
TITLES = {"related": "Related source (a small CNN taught the digits on photos)",
          "imagenet": "ImageNet backbone (Lite0, middle group)",
          "misleading": "Misleading source (the same CNN taught which photo is behind each digit)",
          "random_init": "The same small CNN, untrained (no source)", "scratch": "Small CNN from scratch",
          "pixel_svm": "SVM on pixels"}
# The page's controls, the CLI's defaults and the lesson test all read these: they cannot drift.
# 10/class: the related source helps and the misleading one hurts, each beyond its spread over seeds
# (tests/lessons/test_negative_transfer_lesson.py); 64 px: Lite0's stage3 works there (see SIZE_GAPS). The
# small CNNs see 32 px and the SVM the stored 8x8 digits whatever the size.
DEFAULTS = {"dataset": "digits", "per_class": 10, "seeds": 3, "image_size": 64, "seed": 0}
MAX_PER_CLASS = 50        # the target half of digits holds about 70 per class
CUT = "stage3"
SCRATCH_EPOCHS = 6
SWEEP_PER_CLASS = (5, 10, 20, 40)   # per-class counts the run also scores every source at, against the pixel SVM
# Measured (2026-12-07, digits, 20/class, seeds 0-2, stage3 pooled + logistic regression, against the
# pixel SVM): ImageNet's mean gap per image size. Only 64 px helps beyond the spread over seeds.
SIZE_GAPS = {32: (+0.006, 0.011), 64: (-0.016, 0.014), 96: (+0.014, 0.009)}   # px: (mean gap, max-min)
SIZE_GAPS_AT = "20/class from the whole pool, seeds 0-2"

RUN = register_schema("negative_transfer_run", {"arm": str, "seed": int, "target_acc": float})
GAP = register_schema("negative_transfer_gap", {"source": str, "acc_mean": float, "acc_std": float,
                                                "gap_vs_scratch": float, "gap_vs_pixel_svm": float,
                                                "gap_std": float, "seeds": int})
SWEEP = register_schema("negative_transfer_sweep", {"per_class": int, "seed": int, "imagenet_acc": float,
                                                    "pixel_svm_acc": float, "related_acc": float,
                                                    "misleading_acc": float, "random_init_acc": float})


def validate(plan) -> None:
    opts = dict(plan.options)
    extra = sorted(set(opts) - {"seeds"})
    if extra:
        raise PlanError(f"options.{extra[0]}", "the negative_transfer kind takes: seeds")
    seeds = opts.get("seeds", 3)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise PlanError("options.seeds", "must be a whole number from 1 to 10")
    if plan.per_class is not None and not 5 <= plan.per_class <= MAX_PER_CLASS:
        raise PlanError("per_class", f"must be from 5 to {MAX_PER_CLASS} images per class (the other half of the "
                                     "data is the sources')")


def _cut(net) -> int:
    """Groups to run: the stem up to and including CUT."""
    return net.group_names.index(CUT) + 1


@torch.no_grad()
def _features(net, prep, x, batch=128) -> np.ndarray:
    """Pooled output of groups[:CUT] for uint8 images (inference mode)."""
    net.eval()
    cut = _cut(net)
    return torch.cat([pool(net.features(prep(x[i:i + batch]), 0, cut)).float().cpu()
                      for i in range(0, len(x), batch)]).numpy()


def _logreg(tr: np.ndarray, ty: np.ndarray, va: np.ndarray, vy: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(tr)
    clf = LogisticRegression(max_iter=500, C=0.5, random_state=seed).fit(sc.transform(tr), ty)
    return float((clf.predict(sc.transform(va)) == vy).mean())


def _pixel_svm(train_x, train_y, val_x, val_y, seed) -> float:
    from sklearn.svm import LinearSVC
    x = lambda t: t.float().div(255).flatten(1).numpy()   # noqa: E731
    clf = LinearSVC(C=0.1, random_state=seed, max_iter=5000).fit(x(train_x), train_y.numpy())
    return float((clf.predict(x(val_x)) == val_y.numpy()).mean())


def _scratch(plan, d, seed, device, should_stop) -> float:
    from .dann_arms import scores, small_cnn_arms, train_arm
    p = plan.replace(seed=seed, epochs=SCRATCH_EPOCHS, lr=0.05, batch_size=32)
    arms = small_cnn_arms(d, d, 32, device)
    net = train_arm("target_only", p, arms, lambda e: None, should_stop, score_epochs=False)
    return scores(net, arms)[1]


def _imagenet_pool(prepared, emit, should_stop) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet features at CUT of the whole training pool and the validation split, through the
    engine's feature cache (keyed by data, weights, size and cut): a second run skips the backbone."""
    net = build(prepared, pretrained=True).eval()
    src = source_at(net, _cut(net), prepared, default_cache(), emit, should_stop)
    if not src.cached:   # too big for the cache's budget: computed here, not kept
        d = prepared.data
        return _features(net, prepared.prep, d.train_x), _features(net, prepared.prep, d.val_x)
    return pool(src.train.float()).cpu().numpy(), pool(src.val.float()).cpu().numpy()


def _photo_sources(full, src_rows, tgt_rows, plan, device, emit, should_stop, total: int) -> dict:
    """photo_sources' networks, each trained once per run on the pool's source half: name -> (features of the
    target half, features of the validation split)."""
    images, photos = photo_sources.on_photos(full.train_x[src_rows], plan.seed)
    out = {}
    for name in photo_sources.NAMES:
        def tell(epoch: int, epochs: int, name=name) -> None:
            emit(Phase(f"{name} source: training on the other half on photos, epoch {epoch + 1} of {epochs}", 0, total))
        net = photo_sources.source_net(name, images, full.train_y[src_rows], photos, full.num_classes, plan.seed,
                                       device, should_stop, tell)
        out[name] = (photo_sources.features(net, full.train_x[tgt_rows], device),
                     photo_sources.features(net, full.val_x, device))
    return out


def _arm_acc(arm: str, here, keep: torch.Tensor, read: dict, vy, seed: int, should_stop, emit) -> float:
    """One arm's target accuracy on one seed's training sample (`here.data`, rows `keep` of the target pool);
    `read`: each source's features of the target pool and of the validation split, computed once per run."""
    data = here.data
    if arm == "pixel_svm":
        return _pixel_svm(data.train_x, data.train_y, data.val_x, data.val_y, seed)
    if arm == "scratch":
        return _scratch(here.plan, data, seed, here.policy.device, should_stop)
    tr, va = read[arm]
    return _logreg(tr[keep.numpy()], data.train_y.numpy(), va, vy, seed)


def _sweep(pool, read: dict, vy, seeds: list[int], imbalance: float, should_stop, emit) -> None:
    """Where the sign flips with the per-class count: every source against the pixel SVM, cheap here (the
    features are computed once)."""
    for n in SWEEP_PER_CLASS:
        for seed in seeds:
            check_stop(should_stop)
            keep = subsample(pool.train_y, pool.num_classes, n, imbalance, seed)
            ty, k = pool.train_y[keep].numpy(), keep.numpy()
            accs = {f"{src}_acc": _logreg(read[src][0][k], ty, read[src][1], vy, seed) for src in SOURCES}
            emit(LabResult(SWEEP, {"per_class": n, "seed": seed, **accs, "pixel_svm_acc": _pixel_svm(
                pool.train_x[keep], pool.train_y[keep], pool.val_x, pool.val_y, seed)}))


def _emit_gaps(accs: dict[str, list[float]], seeds: list[int], emit) -> None:
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0   # noqa: E731
    for src in SOURCES:
        gaps_s = [(1 - a) - (1 - b) for a, b in zip(accs[src], accs["scratch"])]
        gaps_p = [(1 - a) - (1 - b) for a, b in zip(accs[src], accs["pixel_svm"])]
        emit(LabResult(GAP, {"source": src, "acc_mean": statistics.mean(accs[src]), "acc_std": sd(accs[src]),
                             "gap_vs_scratch": statistics.mean(gaps_s), "gap_vs_pixel_svm": statistics.mean(gaps_p),
                             "gap_std": sd(gaps_s), "seeds": len(seeds)}))
    emit(Metrics({f"{a}_acc": statistics.mean(v) for a, v in accs.items()}))


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        # The full training pool, split once: one half is the related source's (on photos), the target's
        # samples come from the other half (each seed's as load_plan_data would draw it from that half).
        whole = plan.replace(per_class=None, imbalance=1.0)
        prepared = prepare(whole, emit, should_stop)
        full = prepared.data
        scope.keep(classes=tuple(full.classes))
        emit(started(prepared, None))
        src_rows, tgt_rows = photo_sources.halves(full.train_y, full.num_classes)
        pool = dataclasses.replace(full, train_x=full.train_x[tgt_rows], train_y=full.train_y[tgt_rows])
        seeds = [plan.seed + i for i in range(plan.option("seeds", DEFAULTS["seeds"]))]
        total, done = len(seeds) * len(ARMS), 0
        emit(Phase("imagenet features", 0, total))
        im_tr, im_va = _imagenet_pool(prepared, emit, should_stop)
        read = {"imagenet": (im_tr[tgt_rows.numpy()], im_va),
                **_photo_sources(full, src_rows, tgt_rows, plan, prepared.policy.device, emit, should_stop,
                                  total)}
        vy = full.val_y.numpy()
        accs: dict[str, list[float]] = {a: [] for a in ARMS}
        for seed in seeds:
            keep = subsample(pool.train_y, pool.num_classes, plan.per_class, plan.imbalance, seed)
            data = dataclasses.replace(pool, train_x=pool.train_x[keep], train_y=pool.train_y[keep])
            here = dataclasses.replace(prepared, plan=plan.replace(seed=seed), data=data)
            for arm in ARMS:
                check_stop(should_stop)
                emit(Phase(f"{arm}, seed {seed}", done, total))
                acc = _arm_acc(arm, here, keep, read, vy, seed, should_stop, emit)
                accs[arm].append(acc)
                done += 1
                emit(LabResult(RUN, {"arm": arm, "seed": seed, "target_acc": acc}))
        _sweep(pool, read, vy, seeds, plan.imbalance, should_stop, emit)
        _emit_gaps(accs, seeds, emit)


# RUN last: the progress line counts what ran, one row per seed and arm.
def train_images(plan, data):
    """What the host's image limit counts: each arm's sample, and the sweep's largest (40 per class)."""
    from ..limits import TrainImages
    d = data()
    return TrainImages(max(int(d.train_y.numel()), max(SWEEP_PER_CLASS) * d.num_classes), "per_class",
                       "images per class (--per-class)", per_unit=d.num_classes, least=max(SWEEP_PER_CLASS))


register_kind(Kind("negative_transfer", "Negative transfer", run, validate=validate, results=(GAP, SWEEP, RUN),
                   epochs=None, train_images=train_images,   # its arms train for their own fixed epochs
                   unit="arm run", network=lambda p: f"{p.model} up to {CUT} (each source) vs a small CNN"))


# --- reading a run back: the verdicts the page and the lesson state ---------------------------------------
def per_seed(run) -> dict[str, dict[int, float]]:
    """arm -> {seed: target accuracy} of a run."""
    out: dict[str, dict[int, float]] = {}
    for r in run.results:
        if r.schema == RUN:
            out.setdefault(r.values["arm"], {})[r.values["seed"]] = r.values["target_acc"]
    return out


def judge(gaps: list[float]) -> str:
    """helped / hurt only when the mean gap is beyond its spread over seeds (max - min); else within spread."""
    mean, spread = statistics.fmean(gaps), max(gaps) - min(gaps)
    if abs(mean) <= spread:
        return "within spread"
    return "hurt" if mean > 0 else "helped"


def verdicts(accs: dict[str, dict[int, float]]) -> tuple[str | None, list[dict]]:
    """(the stronger no-transfer arm, one row per source): its per-seed gaps against that arm (paired
    by seed), their mean and spread, and the verdict."""
    have = [a for a in WITHOUT if accs.get(a)]
    if not have:
        return None, []
    base = max(have, key=lambda a: statistics.fmean(accs[a].values()))
    rows = []
    for src in SOURCES:
        seeds = sorted(set(accs.get(src, {})) & set(accs[base]))
        if not seeds:
            continue
        gaps = {s: (1 - accs[src][s]) - (1 - accs[base][s]) for s in seeds}
        g = list(gaps.values())
        rows.append({"source": src, "baseline": base, "gaps": gaps, "acc": {s: accs[src][s] for s in seeds},
                     "gap": statistics.fmean(g), "spread": max(g) - min(g), "verdict": judge(g)})
    return base, rows


def sweep(run) -> dict[str, list[dict]]:
    """Source -> per-class count -> its gap against the pixel SVM (mean, spread, verdict), from the run."""
    by: dict[str, dict[int, list[float]]] = {}
    for r in run.results:
        if r.schema == SWEEP:
            v = r.values
            for src in SOURCES:
                if f"{src}_acc" in v:   # runs recorded before the photo sources have ImageNet's only
                    by.setdefault(src, {}).setdefault(v["per_class"], []).append(
                        (1 - v[f"{src}_acc"]) - (1 - v["pixel_svm_acc"]))
    return {src: [{"per_class": n, "gap": statistics.fmean(g), "spread": max(g) - min(g), "verdict": judge(g)}
                  for n, g in sorted(counts.items())] for src, counts in by.items()}


def flip_sentence(source: str, rows: list[dict]) -> str:
    """Where a source's verdict against the pixel SVM changes with the per-class count, in words."""
    if not rows:
        return ""
    parts = [f"{r['per_class']}/class {r['verdict']} ({r['gap']:+.3f})" for r in rows]
    changes = [(a, b) for a, b in zip(rows, rows[1:]) if a["verdict"] != b["verdict"]]
    where = ("; the verdict changes between " + ", and between ".join(
        f"{a['per_class']} and {b['per_class']} per class" for a, b in changes)) if changes else \
        "; the verdict is the same at every count"
    return f"{TITLES[source]} against the pixel SVM, by images per class: " + ", ".join(parts) + where + "."


def make_plan(dataset=DEFAULTS["dataset"], per_class=DEFAULTS["per_class"], seeds=DEFAULTS["seeds"],
              image_size=DEFAULTS["image_size"], seed=DEFAULTS["seed"]):
    from ..train.plan import Plan
    return Plan(kind="negative_transfer", dataset=dataset, per_class=per_class, image_size=image_size, seed=seed,
                options={"seeds": seeds}, strategy="feature_extractor")


# --- the command line ---------------------------------------------------------------------------------------
def _add_arguments(p) -> None:
    d = DEFAULTS
    p.add_argument("--dataset", default=d["dataset"], help=f"the target dataset (default {d['dataset']})")
    p.add_argument("--per-class", type=int, default=d["per_class"],
                   help=f"training images per class (default {d['per_class']})")
    p.add_argument("--seeds", type=int, default=d["seeds"],
                   help=f"seeds per arm, 1 to 10 (default {d['seeds']}): mean and spread")
    p.add_argument("--image-size", type=int, default=d["image_size"],
                   help=f"side in pixels the backbone sees (default {d['image_size']})")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"the first seed (default {d['seed']})")


def summary(run, notes=None) -> dict:
    """The page's numbers as one dict: each arm's accuracy over the seeds, each source's gap and verdict."""
    accs = per_seed(run)
    arms = {a: {"per_seed": {str(s): round(v, 4) for s, v in sorted(accs[a].items())},
                "acc_mean": round(statistics.mean(accs[a].values()), 4)} for a in ARMS if accs.get(a)}
    base, rows = verdicts(accs)
    plan = run.plan
    return {"run_id": run.id, "status": run.status, "kind": "negative_transfer", "dataset": plan.dataset,
            "per_class": plan.per_class, "image_size": plan.image_size, "cut": CUT,
            "seeds": plan.option("seeds", DEFAULTS["seeds"]), "arms": arms, "baseline": base,
            "verdicts": {r["source"]: {"gap": round(r["gap"], 4), "spread": round(r["spread"], 4),
                                       "verdict": r["verdict"]} for r in rows},
            "per_class_sweep": {src: [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                      for r in rows] for src, rows in sweep(run).items()},
            "seconds": round(run.ended.seconds, 3) if run.ended else None, "message": run.message}


def _run_command(args) -> int:
    from ..cli import run_plan_here
    plan = make_plan(args.dataset, args.per_class, args.seeds, args.image_size, args.seed)
    return run_plan_here(plan, summary)


from ..cli import Command, register_command  # noqa: E402
register_command(Command("negative-transfer", "negative transfer: each source against none, over seeds, one JSON line",
                         _add_arguments, _run_command,
                         "Fit the same target with and without each source (ImageNet, a misleading source, "
                         "random init; Lite0 read at its middle group) over several seeds; the gap is target "
                         "error with the source minus without it (above 0: the source hurt), judged against "
                         "the stronger no-transfer arm."))
