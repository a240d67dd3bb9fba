"""Zero-shot learning by attributes: recognise classes the model never saw a labelled image of.

The lecture notes: zero-shot learning learns a task with no labelled examples ("can you classify an
object without ever seeing it?"). Direct attribute prediction (Lampert, Nickisch and Harmeling 2009):
every class is described by a row of yes/no attributes ("has a closed loop", "is worn on the feet").
One classifier per attribute learns it from the images of the *seen* classes (their labels say which
attributes they have); an image of an *unseen* class is then given the unseen class whose description
best matches the attributes predicted for it:

    score(z | x) = sum over attributes m of  log p(a_m = a_m(z) | x) - log p(a_m = a_m(z))

(the second term divides out how common the attribute is among the seen classes, as in the paper).
No image of an unseen class is used for training. The run scores the learner's table and, beside it,
the same table with its rows scrambled among the classes (each class gets another class's description):
the attribute classifiers and the test images are the same, only the descriptions stop being true.
The attribute classifiers read the pretrained network's CNN codes at the group below its top
(stage4 of EfficientNet-Lite0; on digits the middle groups carry more than the top one, see the probe),
computed once and cached by the engine.
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..data.registry import DATASETS
from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.phases import prepare, started
from ..train.scope import RunScope, check_stop
from .codes import check_plan, frozen_codes

KIND = "zero_shot"
IMAGE_SIZE = 64
C = 0.01            # the attribute classifiers' regularisation: strong, so their probabilities are not overconfident
PROB_CLIP = 1e-3    # no single attribute may veto a class outright
MAX_ATTRIBUTES, MAX_NAME = 30, 40
MARGIN = 0.05       # accuracy differences the page reads as "about the same"

# The default descriptions, in plain words a learner can check against the images and edit on the page.
# Each attribute is something a person sees, not something read off the data.
TABLES: dict[str, dict[str, Any]] = {
    "digits": {
        "attributes": ["closed loop", "vertical stroke", "bar on top", "diagonal stroke", "round bottom",
                       "round top", "opens to the left", "crossbar"],
        "rows": {"0": [1, 0, 0, 0, 1, 1, 0, 0], "1": [0, 1, 0, 0, 0, 0, 0, 0], "2": [0, 0, 0, 1, 0, 1, 0, 0],
                 "3": [0, 0, 0, 0, 1, 1, 1, 0], "4": [0, 1, 0, 0, 0, 0, 0, 1], "5": [0, 0, 1, 0, 1, 0, 1, 0],
                 "6": [1, 0, 0, 0, 1, 0, 0, 0], "7": [0, 0, 1, 1, 0, 0, 0, 0], "8": [1, 0, 0, 0, 1, 1, 0, 0],
                 "9": [1, 1, 0, 0, 0, 1, 0, 0]},
        "unseen": ["3", "8"]},
    "fashion_mnist": {
        "attributes": ["worn on the feet", "worn on the upper body", "has sleeves", "long sleeves", "covers the legs",
                       "covers the ankle", "open, with straps", "has a handle", "opens at the front",
                       "reaches below the hips"],
        "rows": {"T-shirt/top": [0, 1, 1, 0, 0, 0, 0, 0, 0, 0], "Trouser": [0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
                 "Pullover": [0, 1, 1, 1, 0, 0, 0, 0, 0, 0], "Dress": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
                 "Coat": [0, 1, 1, 1, 0, 0, 0, 0, 1, 1], "Sandal": [1, 0, 0, 0, 0, 0, 1, 0, 0, 0],
                 "Shirt": [0, 1, 1, 1, 0, 0, 0, 0, 1, 0], "Sneaker": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                 "Bag": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0], "Ankle boot": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]},
        "unseen": ["Sandal", "Shirt"]},
}
PER_CLASS = {"fashion_mnist": 300}   # training images per class where the full set would make the feature pass long

ATTRIBUTE = register_schema("zero_shot_attribute", {"attribute": str, "used": bool, "seen_with": int,
                                                    "unseen_acc": float})
CLASS = register_schema("zero_shot_class", {"table": str, "cls": str, "acc": float, "images": int})
TABLE = register_schema("zero_shot_table", {"table": str, "acc": float, "chance": float, "unseen": int,
                                            "images": int})
TABLE_NAMES = ("yours", "scrambled")


# --- options ---------------------------------------------------------------------------------------
def need_table(dataset: str) -> None:
    if dataset not in TABLES:
        raise PlanError("dataset", f"zero-shot needs classes described by attributes: choose one of "
                                   f"{', '.join(TABLES)}")


def default_options(dataset: str) -> dict[str, Any]:
    t = TABLES[dataset]
    classes = DATASETS[dataset].classes
    return {"attributes": list(t["attributes"]), "table": [list(t["rows"][c]) for c in classes],
            "unseen": [classes.index(c) for c in t["unseen"]]}


def options(plan) -> dict[str, Any]:
    return {**default_options(plan.dataset), **plan.options}


def validate(plan) -> None:
    need_table(plan.dataset)
    unknown = sorted(set(plan.options) - {"attributes", "table", "unseen"})
    if unknown:
        raise PlanError(f"options.{unknown[0]}", "is not a zero-shot option; use attributes, table, unseen")
    o = options(plan)
    classes = DATASETS[plan.dataset].classes
    names = o["attributes"]
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_ATTRIBUTES:
        raise PlanError("options.attributes", f"must list 1 to {MAX_ATTRIBUTES} attribute names")
    for n in names:
        if not isinstance(n, str) or not n.strip() or len(n) > MAX_NAME:
            raise PlanError("options.attributes", f"each name must be 1 to {MAX_NAME} characters, not {n!r}")
    if len({n.strip().lower() for n in names}) != len(names):
        raise PlanError("options.attributes", "two attributes have the same name")
    table = o["table"]
    if not isinstance(table, list) or len(table) != len(classes):
        raise PlanError("options.table", f"needs one row per class ({len(classes)})")
    for c, row in zip(classes, table):
        if not isinstance(row, list) or len(row) != len(names) or any(
                not (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))) for v in row):
            raise PlanError("options.table", f"the row of class {c!r} must hold one 0/1 per attribute ({len(names)})")
    unseen = o["unseen"]
    if not isinstance(unseen, list) or any(isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < len(classes)
                                           for u in unseen) or len(set(unseen)) != len(unseen):
        raise PlanError("options.unseen", f"must list distinct class indices from 0 to {len(classes) - 1}")
    if not 2 <= len(unseen) <= len(classes) - 2:
        raise PlanError("options.unseen", f"needs at least 2 unseen classes and at least 2 seen ones "
                                          f"(of {len(classes)})")
    rows = {tuple(int(v) for v in table[u]) for u in unseen}
    if len(rows) != len(unseen):
        raise PlanError("options.table", "two unseen classes have the same description: nothing could tell them apart")
    check_plan(plan, "zero-shot")


# --- the method ------------------------------------------------------------------------------------
def scramble(n_classes: int, seed: int) -> np.ndarray:
    """A derangement: every class gets another class's row (seeded)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n_classes)
        if (perm != np.arange(n_classes)).all():
            return perm


def attribute_probs(train: np.ndarray, targets: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray | None:
    """p(attribute | image) for the test images, from one logistic regression on standardised codes;
    None when the seen classes all agree on it (nothing to learn it from)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if targets.min() == targets.max():
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    model.fit(train, targets)
    return model.predict_proba(test)[:, 1]


def dap_scores(probs: list[np.ndarray | None], table: np.ndarray, prior: np.ndarray, unseen: list[int]) -> np.ndarray:
    """[images, unseen] log-scores of direct attribute prediction (an attribute without a classifier counts
    for nothing)."""
    n = next(len(p) for p in probs if p is not None)
    scores = np.zeros((n, len(unseen)))
    for m, p in enumerate(probs):
        if p is None:
            continue
        p = p.clip(PROB_CLIP, 1 - PROB_CLIP)
        pa = float(np.clip(prior[m], PROB_CLIP, 1 - PROB_CLIP))
        for j, z in enumerate(unseen):
            scores[:, j] += np.log(p) - np.log(pa) if table[z, m] else np.log(1 - p) - np.log(1 - pa)
    return scores


def split(codes, unseen: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(seen training codes, their labels, every unseen-class image's codes, their labels): the unseen
    classes' training and validation images alike are test images, since none is ever trained on."""
    d = codes.prepared.data
    ty, vy = d.train_y.numpy(), d.val_y.numpy()
    seen_tr = ~np.isin(ty, unseen)
    test = np.concatenate([codes.train[~seen_tr], codes.val[np.isin(vy, unseen)]])
    test_y = np.concatenate([ty[~seen_tr], vy[np.isin(vy, unseen)]])
    return codes.train[seen_tr], ty[seen_tr], test, test_y


def evaluate(train, train_y, test, test_y, table: np.ndarray, unseen: list[int], seed: int, should_stop
             ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """(predicted unseen class per test image, each attribute's probabilities) for one table."""
    targets = table[train_y]
    probs = []
    for m in range(table.shape[1]):
        check_stop(should_stop)
        probs.append(attribute_probs(train, targets[:, m], test, seed))
    prior = targets.mean(0)
    return np.asarray(unseen)[dap_scores(probs, table, prior, unseen).argmax(1)], probs


# --- the run ---------------------------------------------------------------------------------------
def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        o = options(plan)
        prepared = prepare(plan, emit, should_stop)
        d = prepared.data
        scope.keep(classes=tuple(d.classes))
        codes = frozen_codes(prepared, emit, should_stop, layer=prepared.spec.group_names[-2])
        emit(started(prepared, codes.net))
        unseen, names = list(o["unseen"]), list(o["attributes"])
        yours = np.asarray(o["table"], dtype=np.int64)
        tables = {"yours": yours, "scrambled": yours[scramble(d.num_classes, plan.seed)]}
        train, train_y, test, test_y = split(codes, unseen)
        chance = 1 / len(unseen)
        accs = {}
        for i, (title, table) in enumerate(tables.items()):
            emit(Phase(f"attribute classifiers · {title} table", i, len(tables)))
            pred, probs = evaluate(train, train_y, test, test_y, table, unseen, plan.seed, should_stop)
            if title == "yours":
                seen_with = (table[np.setdiff1d(np.arange(d.num_classes), unseen)]).sum(0)
                for m, name in enumerate(names):
                    p = probs[m]
                    acc = float(((p > 0.5) == table[test_y, m].astype(bool)).mean()) if p is not None else 0.0
                    emit(LabResult(ATTRIBUTE, {"attribute": name, "used": p is not None,
                                               "seen_with": int(seen_with[m]), "unseen_acc": acc}))
            for z in unseen:
                mask = test_y == z
                emit(LabResult(CLASS, {"table": title, "cls": d.classes[z], "acc": float((pred[mask] == z).mean()),
                                       "images": int(mask.sum())}))
            accs[title] = float((pred == test_y).mean())
            emit(LabResult(TABLE, {"table": title, "acc": accs[title], "chance": chance, "unseen": len(unseen),
                                   "images": len(test_y)}))
        emit(Phase("attribute classifiers", len(tables), len(tables)))
        emit(Metrics({"unseen_acc": accs["yours"], "scrambled_acc": accs["scrambled"], "chance": chance}))


register_kind(Kind(KIND, "Zero-shot learning", run, validate=validate, results=(ATTRIBUTE, CLASS, TABLE),
                   unit="table"))


# --- reading a run back ----------------------------------------------------------------------------
def outcome(results) -> dict[str, dict]:
    """table title -> its row (acc, chance, unseen, images)."""
    return {r.values["table"]: dict(r.values) for r in results if r.schema == TABLE}


def per_class(results) -> list[dict]:
    return [dict(r.values) for r in results if r.schema == CLASS]


def attributes(results) -> list[dict]:
    return [dict(r.values) for r in results if r.schema == ATTRIBUTE]


def findings(results) -> list[str]:
    """What the run showed, from its own numbers."""
    out = outcome(results)
    if "yours" not in out:
        return []
    y = out["yours"]
    said = [f"Your table: {y['acc']:.3f} of {y['images']:,} images of the {y['unseen']} unseen classes recognised; "
            f"guessing among them would get {y['chance']:.3f}."]
    if y["acc"] <= y["chance"] + MARGIN:
        said.append("That is not clearly better than guessing: the attributes that separate the unseen classes were "
                    "not learned well enough from the seen ones (see the attribute table below).")
    if "scrambled" in out:
        s = out["scrambled"]
        drop = y["acc"] - s["acc"]
        if drop > MARGIN:
            how = f"{drop * 100:.1f} points lower: the true descriptions, not the classifiers alone, did the work."
        elif drop >= -MARGIN:
            how = f"{drop * 100:+.1f} points: about as well, so here the table's descriptions carried little."
        else:
            how = (f"{-drop * 100:.1f} points higher than your table: the attributes that set the unseen classes "
                   "apart in your table were not the ones the classifiers learned to see (see each attribute below).")
        said.append(f"With the rows scrambled (each class described by another's row): {s['acc']:.3f}, {how}")
    unused = [a["attribute"] for a in attributes(results) if not a["used"]]
    if unused:
        said.append(f"Not learnable from the seen classes (all of them agree on it): {', '.join(unused)}. An attribute "
                    "only an unseen class has can never be learned: share it with a seen class.")
    return said


# --- the plan the page and the command line build ------------------------------------------------------
def lab_plan(*, dataset: str = "digits", seed: int = 0, model: str = "efficientnet_lite0",
             image_size: int = IMAGE_SIZE, **opts: Any):
    from ..train.plan import Plan
    need_table(dataset)
    return Plan(kind=KIND, dataset=dataset, model=model, image_size=image_size, seed=seed,
                per_class=PER_CLASS.get(dataset), strategy="fine_tune_top", top_groups=1,
                options={**default_options(dataset), **opts})


def unseen_indices(dataset: str, text: str) -> list[int]:
    """'3,8' or 'Sandal,Shirt' -> class indices of the dataset (names first, then numbers)."""
    need_table(dataset)   # read before the plan is made, so the plan's own check comes too late
    classes = DATASETS[dataset].classes
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in classes:
            out.append(classes.index(part))
        elif part.isdigit() and int(part) < len(classes):
            out.append(int(part))
        else:
            raise PlanError("unseen", f"{part!r} is not a class of {dataset} ({', '.join(classes)})")
    return out


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(TABLES)} (default digits)")
    p.add_argument("--unseen", default="", metavar="CLASS,CLASS",
                   help="classes never trained on, by name or index (default: digits 3,8; fashion_mnist Sandal,Shirt)")
    p.add_argument("--model", default="efficientnet_lite0", help="the CNN, from `python -m tlcore models`")
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"side in px (default {IMAGE_SIZE})")
    p.add_argument("--seed", type=int, default=0, help="picks the scrambled table (default 0)")


def summary(run, notes=None) -> dict[str, Any]:
    out = outcome(run.results)
    o = run.plan.options
    classes = run.started.classes if run.started else ()
    return {"kind": KIND, "dataset": run.plan.dataset,
            "unseen": [classes[u] if u < len(classes) else u for u in o.get("unseen", [])],
            "attributes": len(o.get("attributes", [])),
            "unseen_acc": round(out["yours"]["acc"], 4) if "yours" in out else None,
            "scrambled_acc": round(out["scrambled"]["acc"], 4) if "scrambled" in out else None,
            "chance": round(out["yours"]["chance"], 4) if "yours" in out else None,
            "per_class": {r["cls"]: round(r["acc"], 4) for r in per_class(run.results) if r["table"] == "yours"},
            "images": out["yours"]["images"] if "yours" in out else None,
            "status": run.status, "seconds": round(run.ended.seconds, 3) if run.ended else None}


def _run_command(args: argparse.Namespace) -> int:
    from ..cli import run_plan_here
    opts = {"unseen": unseen_indices(args.dataset, args.unseen)} if args.unseen else {}
    plan = lab_plan(dataset=args.dataset, seed=args.seed, model=args.model, image_size=args.image_size, **opts)
    return run_plan_here(plan, summary)


def _register_command() -> None:
    from ..cli import Command, register_command
    register_command(Command("zero-shot", "zero-shot learning by attributes: classes never seen, from descriptions",
                             _add_arguments, _run_command,
                             description="Learn one classifier per attribute on the seen classes, recognise the "
                                         "unseen ones from their rows of the attribute table (and from a scrambled "
                                         "table beside it); print one JSON line."))


_register_command()
