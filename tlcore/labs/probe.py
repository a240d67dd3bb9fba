"""Where to transfer: a linear probe on the pooled output of every layer group, from ONE forward pass.

The lecture notes say early layers hold generic features and later ones features specific to the
source task. The probe measures it on the learner's data: each layer group's output, pooled to one
vector per image, is the input of the same linear classifier (standardised features, logistic
regression with C chosen by cross-validation on the training split only), scored on the validation
split. Forward hooks pool every group's output on the way up, so all groups cost one feature pass;
the pooled vectors are cached like the engine's other features.

Where the time went (issue 29, a shared 2-core Zen 5): sklearn's fits on two BLAS threads (scipy's
L-BFGS on matrices of ~1,000 x <= 1,280 spent more on waking and spinning threads than on arithmetic:
25x the CPU time of one thread), then the fp32 feature pass. The fits now run on one BLAS thread with
each fold's scaling shared by the four C, numbers unchanged (`fit_probe_plain`, the plain GridSearchCV,
is kept as the reference); the pass runs on the engine's inference copy of the groups (BatchNorm
folded, activations fused: 1.8x), fp32 as before.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..device import DevicePolicy
from ..errors import PlanError
from ..inspect.core import pool
from ..kinds import Kind, register_kind
from ..models.base import Network
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import FeatureCache, FrozenPrefix, default_cache, feature_key
from ..train.phases import FEATURE_BATCH, build, cache_identity, prepare, started
from ..train.pipeline import Preprocess
from ..train.scope import RunScope, check_stop
from ..train.sklearn_heads import one_blas_thread

GROUP_SCHEMA = register_schema("probe_group", {"group": str, "index": int, "dim": int, "val_acc": float,
                                               "c": float})
BASELINE_SCHEMA = register_schema("probe_baseline", {"pixel_svm": float, "seconds": float,
                                                     "feature_seconds": float})
C_GRID = (0.01, 0.1, 1.0, 10.0)     # the probe's regularisation, picked per group by cross-validation
CV_FOLDS = 3
POOLED_VERSION = "pooled-v2"   # v2: computed on the inference copy (BatchNorm folded), not the network itself


@contextmanager
def pooling_hooks(groups: Sequence[nn.Module]):
    """While inside, every forward pass through `groups` (a network's layer groups, bottom -> top)
    leaves each group's pooled output in the yielded list, via forward hooks: the pass is unchanged."""
    out: list[torch.Tensor | None] = [None] * len(groups)
    handles = []
    for i, g in enumerate(groups):
        def hook(_m, _inp, y, i=i):
            out[i] = pool(y).float()
        handles.append(g.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def pooled_all_groups(net: Network, x: torch.Tensor, groups: nn.Sequential | None = None) -> list[torch.Tensor]:
    """Pooled output of every layer group for one normalised batch, from one forward pass: through
    the network's own groups, or through `groups`, a copy of them (inference_groups)."""
    with pooling_hooks(list(net.groups.values()) if groups is None else list(groups)) as out:
        (net.features if groups is None else groups)(x)
    return [t for t in out]  # type: ignore[misc]


@torch.no_grad()
def inference_groups(net: Network, prep: Preprocess, policy: DevicePolicy) -> nn.Sequential | None:
    """The network's layer groups as the engine's inference-only copy (train.features.FrozenPrefix):
    BatchNorm folded into the convolutions and, on a CPU, "same" padding made static and each
    convolution fused with its activation: the pass 1.8x faster on a Zen 5 core, the same numbers
    to ~1e-5. In fp32, not the policy's bf16: bf16 codes (4-8% off) moved the 96 px lesson's margin
    below its bar. Checked group by group against the network's own pooled outputs on a probe batch;
    None (use the network itself) where the copy does not keep the groups apart or differs."""
    fp32 = dataclasses.replace(policy, amp_dtype=None)
    copy = FrozenPrefix(net, len(net.group_names), prep, fp32).module
    if len(copy) != len(net.group_names):
        return None
    g = torch.Generator().manual_seed(1)
    x = prep(torch.randint(0, 256, (2, 3, prep.size, prep.size), dtype=torch.uint8, generator=g)).float()
    mode = net.training
    net.eval()
    try:
        want = pooled_all_groups(net, x)
    finally:
        net.train(mode)
    got = pooled_all_groups(net, x, copy)
    same = all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-3, atol=1e-3 * max(float(b.abs().max()), 1e-6))
               for a, b in zip(got, want))
    return copy if same else None


@torch.no_grad()
def pooled_one_cut_at_a_time(net: Network, x: torch.Tensor) -> list[torch.Tensor]:
    """The naive reference: for each cut k, run groups[:k+1] from the image again and pool."""
    return [pool(net.features(x, 0, k + 1)).float() for k in range(len(net.group_names))]


@torch.no_grad()
def pooled_features(net: Network, images: torch.Tensor, prep, batch: int = 64,
                    progress: Callable[[int, int], None] | None = None, naive: bool = False,
                    groups: nn.Sequential | None = None) -> list[torch.Tensor]:
    """Every group's pooled features for uint8 images, batch by batch (CPU float32, one tensor per group):
    one hooked pass through the network (or through `groups`, its inference copy), or with `naive`
    the plain reference that runs the groups up to each cut again."""
    net.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in net.group_names]
    n = images.shape[0]
    fn = pooled_one_cut_at_a_time if naive else functools.partial(pooled_all_groups, groups=groups)
    for start in range(0, n, batch):
        for i, t in enumerate(fn(net, prep(images[start:start + batch]))):
            parts[i].append(t.cpu())
        if progress is not None:
            progress(min(start + batch, n), n)
    return [torch.cat(p) for p in parts]


def _folds(train_y: np.ndarray) -> int:
    return int(max(2, min(CV_FOLDS, np.bincount(train_y).min())))


def fit_probe_plain(train_f: np.ndarray, train_y: np.ndarray, val_f: np.ndarray, val_y: np.ndarray,
                    seed: int = 0) -> tuple[float, float]:
    """The protocol written plainly, kept as the reference fit_probe must match: GridSearchCV over
    C_GRID of a StandardScaler + logistic regression pipeline, stratified folds shuffled by `seed`,
    refit on the whole training split, scored on validation. (validation accuracy, chosen C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    search = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)},
                          cv=StratifiedKFold(_folds(train_y), shuffle=True, random_state=seed))
    search.fit(train_f, train_y)
    return float(search.score(val_f, val_y)), float(search.best_params_["logisticregression__C"])


def fit_probe(train_f: np.ndarray, train_y: np.ndarray, val_f: np.ndarray, val_y: np.ndarray,
              seed: int = 0) -> tuple[float, float]:
    """(validation accuracy, chosen C) of the one protocol every group gets: fit_probe_plain's folds,
    fits and choice (the first C of the best mean fold accuracy, as GridSearchCV ranks), so its
    numbers, with each fold standardised once for the four C and the fits on one BLAS thread.
    Warm starts along the C path were tried and left out: they changed the chosen C of 7 groups in
    36 on digits (fold accuracies of neighbouring C differ by an image) to save a quarter of the fits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = _folds(train_y)
    scores = np.empty((len(C_GRID), folds))
    with one_blas_thread():
        for k, (a, b) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(train_f, train_y)):
            scale = StandardScaler().fit(train_f[a])
            fit_x, held_x = scale.transform(train_f[a]), scale.transform(train_f[b])
            for i, c in enumerate(C_GRID):
                clf = LogisticRegression(max_iter=300, C=c).fit(fit_x, train_y[a])
                scores[i, k] = clf.score(held_x, train_y[b])
        best = C_GRID[int(np.argmax(np.average(scores, axis=1)))]
        final = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=best)).fit(train_f, train_y)
        return float(final.score(val_f, val_y)), float(best)


def pixel_svm_accuracy(data, seed: int = 0) -> float:
    from ..train.sklearn_heads import fit_predict, pixel_features
    pred, _, _ = fit_predict("pixel_svm", pixel_features(data.train_x), data.train_y.numpy(),
                             pixel_features(data.val_x), seed)
    return float((np.asarray(pred) == data.val_y.numpy()).mean())


def _split_groups(flat: torch.Tensor, dims: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat, dims, dim=1))


def group_features(net: Network, prepared, emit, should_stop, cache: FeatureCache | None = None
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor], float, bool]:
    """(train per group, val per group, seconds of the pass, cache hit): one pass over both splits,
    cached under the engine's feature identity with a key of its own."""
    d, policy = prepared.data, prepared.policy
    cache = cache or default_cache()
    ident = cache_identity(prepared) if prepared.plan.pretrained else None
    key = feature_key({**ident, "mode": POOLED_VERSION}, -1) if ident is not None else None
    if key is not None:
        pair = cache.get(key)
        if pair is not None:
            side = prepared.size
            dims = [int(t.shape[1]) for t in pooled_all_groups(net.eval(), prepared.prep(
                torch.zeros(1, 3, side, side, dtype=torch.uint8)))]
            emit(Phase("features", 1, 1, cache_hit=True))
            return _split_groups(pair[0], dims), _split_groups(pair[1], dims), 0.0, True
    total = len(d.train_y) + len(d.val_y)
    batch = FEATURE_BATCH.get(policy.device.type, 64)

    def progress(offset):
        def tell(done, _n):
            emit(Phase("features", offset + done, total))
            check_stop(should_stop)
        return tell
    t = time.perf_counter()
    groups = inference_groups(net, prepared.prep, policy)
    tr = pooled_features(net, d.train_x, prepared.prep, batch, progress(0), groups=groups)
    va = pooled_features(net, d.val_x, prepared.prep, batch, progress(len(d.train_y)), groups=groups)
    seconds = time.perf_counter() - t
    if key is not None:
        cache.put(key, torch.cat(tr, 1), torch.cat(va, 1))
    return tr, va, seconds, False


def _validate(plan) -> None:
    extra = set(plan.options) - {"samples"}
    if extra:
        raise PlanError("options", f"the probe takes no options {', '.join(sorted(extra))}")
    if plan.strategy != "feature_extractor" or plan.truncate_after:
        raise PlanError("strategy", "the probe reads the pretrained network as it is: strategy feature_extractor, "
                                    "no truncation")


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        t0 = time.perf_counter()
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        net = build(prepared, emit).eval()
        emit(started(prepared, net))
        tr, va, feat_s, _hit = group_features(net, prepared, emit, should_stop)
        d = prepared.data
        ty, vy = d.train_y.numpy(), d.val_y.numpy()
        n = len(net.group_names)
        best = (-1.0, "")
        for i, name in enumerate(net.group_names):
            emit(Phase("probe", i, n + 1))
            check_stop(should_stop)
            acc, c = fit_probe(tr[i].numpy(), ty, va[i].numpy(), vy, plan.seed)
            emit(LabResult(GROUP_SCHEMA, {"group": name, "index": i, "dim": int(tr[i].shape[1]),
                                          "val_acc": acc, "c": c}))
            best = max(best, (acc, name))
        emit(Phase("probe", n, n + 1))
        check_stop(should_stop)
        svm = pixel_svm_accuracy(d, plan.seed)
        emit(Phase("probe", n + 1, n + 1))
        emit(LabResult(BASELINE_SCHEMA, {"pixel_svm": svm, "seconds": time.perf_counter() - t0,
                                         "feature_seconds": feat_s}))
        emit(Metrics({"val_acc": best[0], "pixel_svm": svm}))


register_kind(Kind("probe", "Where to transfer (layer probe)", run, validate=_validate, unit="layer group",
                   results=(BASELINE_SCHEMA, GROUP_SCHEMA), epochs=None))   # one feature pass, then fits: no epochs


# --- reading a probe run back ----------------------------------------------------------------------
def table(run) -> tuple[list[dict], float | None]:
    """(one row per group, bottom -> top, with its val_acc; the pixel-SVM accuracy) of a probe run."""
    rows = sorted((dict(r.values) for r in run.results if r.schema == GROUP_SCHEMA), key=lambda r: r["index"])
    base = next((r.values["pixel_svm"] for r in run.results if r.schema == BASELINE_SCHEMA), None)
    return rows, base


def best_group(rows: list[dict]) -> dict | None:
    """The best group; ties go to the lower (cheaper) one."""
    return max(rows, key=lambda r: (r["val_acc"], -r["index"])) if rows else None


# --- the command line ------------------------------------------------------------------------------
def _add_arguments(p) -> None:
    p.add_argument("--dataset", default="digits", help="dataset name, or folder with --dataset-path")
    p.add_argument("--dataset-path", default="", help="a zip or directory of class folders (--dataset folder)")
    p.add_argument("--model", default="efficientnet_lite0", help="the CNN, from `python -m tlcore models`")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="side in px fed to the model (default: the dashboard's for this machine)")
    p.add_argument("--per-class", type=int, default=None, help="training images per class (default: all)")
    p.add_argument("--seed", type=int, default=0)


def _cmd(args) -> int:
    from ..cli import run_plan_here
    from ..train.plan import Plan, default_image_size
    size = args.image_size if args.image_size is not None else default_image_size("auto")
    plan = Plan(kind="probe", dataset=args.dataset, dataset_path=args.dataset_path, model=args.model,
                image_size=size, per_class=args.per_class, seed=args.seed)
    return run_plan_here(plan, lambda run, notes: summary(run))


def summary(run) -> dict:
    rows, base = table(run)
    best = best_group(rows)
    return {"kind": "probe", "dataset": run.plan.dataset, "model": run.plan.model,
            "groups": [{"group": r["group"], "dim": r["dim"], "val_acc": round(r["val_acc"], 4)} for r in rows],
            "best_group": best["group"] if best else None,
            "pixel_svm": round(base, 4) if base is not None else None,
            "seconds": round(run.ended.seconds, 3) if run.ended else None}


def _register_command() -> None:
    from ..cli import Command, register_command
    register_command(Command("probe", "linear probe on every layer group: where to cut the network",
                             _add_arguments, _cmd,
                             description="Fit the same linear probe on the pooled output of every layer group "
                                         "(one forward pass) and print one JSON line."))


_register_command()

