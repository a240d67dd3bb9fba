"""The plan: a validated, serialisable description of one run. Nothing changes a plan once made."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import PlanError

Strategy = Literal["feature_extractor", "fine_tune_top", "fine_tune_all", "gradual_unfreeze", "scratch", "pixel_svm"]
Head = Literal["linear", "mlp", "logreg", "linear_svm"]
Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["constant", "stlr", "cosine", "one_cycle"]
BNPolicy = Literal["frozen", "train"]
DeviceChoice = Literal["auto", "cpu", "cuda", "mps"]

# The side a new plan gets on a CPU, in px. Cost grows with its square, and the offline default
# (8 px digits) does better at 96 px than at 224 (0.89 vs 0.82 validation accuracy, 3 epochs).
CPU_IMAGE_SIZE = 96

STRATEGIES: tuple[str, ...] = get_args(Strategy)
HEADS: tuple[str, ...] = get_args(Head)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
MAX_IMAGE_SIZE = 512
MAX_SEED = 2**32 - 1
MAX_IMBALANCE = 100


@dataclass(frozen=True)
class Plan:
    kind: str = "train"               # what runs: a strategy on a dataset, or a lab's kind (tlcore.kinds)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)   # the kind's own settings, checked by it
    # data
    dataset: str = "digits"
    dataset_path: str = ""            # folder / zip for dataset="folder"
    dataset_name: str = ""            # what people call it (an upload's file name); "" for registry datasets
    per_class: int | None = None      # training images per class (None: all)
    imbalance: float = 1.0            # largest / smallest class size in the training split (1: balanced)
    image_size: int = 0               # side in pixels fed to the model (0: the model's default)
    augment: bool = False             # random resized crop + flip, on the device
    # model and strategy
    model: str = "efficientnet_lite0"
    strategy: Strategy = "feature_extractor"
    head: Head = "linear"
    top_groups: int = 1               # fine_tune_top: how many groups from the top train
    truncate_after: str = ""          # keep the groups up to this one and put the head on its pooled output
    bn: BNPolicy = "frozen"           # frozen: BN in frozen groups stays in inference mode; train: its affine params train
    # optimisation
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3                  # the head's peak learning rate; each layer group below gets 1/factor of the one above
    optimizer: Optimizer = "adamw"
    momentum: float = 0.9             # SGD only
    weight_decay: float = 1e-4
    factor: float = 2.6               # discriminative rates (fine-tuning only; scratch trains every group at lr)
    schedule: Schedule = "stlr"
    cut_frac: float = 0.1             # STLR: fraction of steps spent warming up
    ratio: float = 32.0               # STLR: peak lr / lowest lr
    warmup_frac: float = 0.0          # cosine: linear warm-up fraction
    pct_start: float = 0.25           # one-cycle: fraction of steps spent warming up (fastai)
    div: float = 25.0                 # one-cycle: peak lr / starting lr
    div_final: float = 1e5            # one-cycle: peak lr / final lr
    mom_max: float = 0.95             # one-cycle: momentum (SGD) or Adam's beta1 at the start and the end
    mom_min: float = 0.85             # one-cycle: momentum (SGD) or Adam's beta1 at the peak lr
    # run
    seed: int = 0
    device: DeviceChoice = "auto"
    deterministic: bool = False       # CUDA: deterministic algorithms, no cuDNN autotuning (CPU runs are anyway)

    def __post_init__(self) -> None:
        _validate(self)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            name = unknown[0] if unknown[0].isidentifier() else repr(unknown[0])   # one line, whatever the key
            raise PlanError(name, "is not a plan field")
        return cls(**d)

    def option(self, name: str, default: Any = None) -> Any:
        """One of the kind's settings (its validator has checked them)."""
        return self.options.get(name, default)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError("plan", f"is not valid JSON ({e.msg})") from None
        if not isinstance(d, dict):
            raise PlanError("plan", "must be a JSON object")
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> "Plan":
        return dataclasses.replace(self, **changes)

    # --- derived values ------------------------------------------------------------------------
    @property
    def pretrained(self) -> bool:
        return self.strategy not in ("scratch", "pixel_svm")

    @property
    def uses_network(self) -> bool:
        return self.strategy != "pixel_svm"

    @property
    def kept_groups(self) -> tuple[str, ...]:
        """The layer groups the network keeps (all, or those up to truncate_after)."""
        from ..models import MODELS
        names = MODELS[self.model].group_names
        return names[:names.index(self.truncate_after) + 1] if self.truncate_after else names

    @property
    def discriminative_factor(self) -> float:
        """The factor actually applied. Lower rates protect what pretraining learned; random weights
        (scratch) have nothing to protect, and 2.6**6 would all but freeze a random stem."""
        return 1.0 if self.strategy == "scratch" else self.factor

    def resolved_image_size(self) -> int:
        if self.image_size:
            return self.image_size
        from ..models import MODELS
        return MODELS[self.model].input_size


def default_image_size(device: str = "auto") -> int:
    """What the dashboard and the CLI put in a new plan: the model's own size (0) on a GPU or an
    Apple GPU, CPU_IMAGE_SIZE on a CPU. Written into the plan, so a stored run stays reproducible."""
    if device == "auto":
        from ..device import auto_device_type
        device = auto_device_type()
    return CPU_IMAGE_SIZE if device == "cpu" else 0


def _check_type(plan: Plan, name: str, types: tuple[type, ...]) -> None:
    v = getattr(plan, name)
    if isinstance(v, bool) and bool not in types:
        raise PlanError(name, f"must be a number, not {v!r}")
    if not isinstance(v, types):
        raise PlanError(name, f"must be of type {'/'.join(t.__name__ for t in types)}, not {type(v).__name__}")


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:   # an int past float's range
        return False


def _choice(plan: Plan, name: str, options: tuple[str, ...]) -> None:
    v = getattr(plan, name)
    if v not in options:
        raise PlanError(name, f"unknown {name} {v!r}; choose one of {', '.join(options)}")


def _validate(p: Plan) -> None:
    from ..data import DATASETS
    from ..models import MODELS

    for name in ("epochs", "batch_size", "top_groups", "seed", "image_size"):
        _check_type(p, name, (int,))
    for name in ("lr", "imbalance", "momentum", "weight_decay", "factor", "cut_frac", "ratio", "warmup_frac",
                 "pct_start", "div", "div_final", "mom_max", "mom_min"):
        _check_type(p, name, (int, float))
        if not _finite(getattr(p, name)):
            raise PlanError(name, "must be a finite number")
    if p.per_class is not None:
        _check_type(p, "per_class", (int,))
    _check_type(p, "augment", (bool,))
    _check_type(p, "deterministic", (bool,))
    _check_type(p, "kind", (str,))
    _check_type(p, "truncate_after", (str,))
    if not isinstance(p.options, dict):
        raise PlanError("options", f"must be a JSON object of the {p.kind} kind's settings")
    _check_type(p, "dataset_path", (str,))
    _check_type(p, "dataset_name", (str,))
    if len(p.dataset_name) > 200:
        raise PlanError("dataset_name", "must be at most 200 characters")

    for name in ("dataset", "model", "strategy", "head", "optimizer", "schedule", "bn", "device"):
        _check_type(p, name, (str,))   # before any lookup: a list from a JSON plan is not a name
    if p.dataset not in DATASETS:
        raise PlanError("dataset", f"unknown dataset {p.dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    if p.dataset == "folder" and not p.dataset_path:
        raise PlanError("dataset_path", "the folder dataset needs a path to a directory or .zip of class folders")
    if p.dataset_path and p.dataset != "folder":   # never stored and silently ignored
        raise PlanError("dataset_path", f"is read only by the folder dataset, and this plan's dataset is {p.dataset!r}: "
                                        "use --dataset folder with it, or leave the path out")
    if p.model not in MODELS:
        raise PlanError("model", f"unknown model {p.model!r}; choose one of {', '.join(sorted(MODELS))}")
    _choice(p, "strategy", STRATEGIES)
    _choice(p, "head", HEADS)
    _choice(p, "optimizer", get_args(Optimizer))
    _choice(p, "schedule", SCHEDULES)
    _choice(p, "bn", get_args(BNPolicy))
    _choice(p, "device", get_args(DeviceChoice))

    spec = MODELS[p.model]
    n_groups = len(p.kept_groups) if p.truncate_after in spec.group_names else len(spec.groups)
    if not 1 <= p.epochs <= 1000:
        raise PlanError("epochs", "must be between 1 and 1000")
    if not 1 <= p.batch_size <= 4096:
        raise PlanError("batch_size", "must be between 1 and 4096")
    if not 0 <= p.seed <= MAX_SEED:
        raise PlanError("seed", f"must be a whole number from 0 to {MAX_SEED:,} (numpy and scikit-learn take no other)")
    if not 0 < p.lr <= 1.0:
        raise PlanError("lr", f"must be above 0 and at most 1 (got {p.lr}); typical values are 1e-4 to 1e-2")
    if p.per_class is not None and p.per_class < 2:
        raise PlanError("per_class", "needs at least 2 images per class")
    if not 1 <= p.imbalance <= MAX_IMBALANCE:
        raise PlanError("imbalance", f"is the largest class over the smallest: between 1 and {MAX_IMBALANCE}")
    if p.image_size and not spec.min_input_size <= p.image_size <= MAX_IMAGE_SIZE:
        raise PlanError("image_size", f"{spec.title} takes images from {spec.min_input_size} to {MAX_IMAGE_SIZE} px, not {p.image_size}")
    if p.factor < 1:
        raise PlanError("factor", "must be at least 1 (1 turns discriminative rates off)")
    if not 0 < p.cut_frac < 1:
        raise PlanError("cut_frac", "must be between 0 and 1")
    if p.ratio < 1:
        raise PlanError("ratio", "must be at least 1")
    if not 0 <= p.warmup_frac < 1:
        raise PlanError("warmup_frac", "must be at least 0 and below 1")
    if not 0 < p.pct_start < 1:
        raise PlanError("pct_start", "must be between 0 and 1")
    if p.div < 1 or p.div_final < 1:
        raise PlanError("div" if p.div < 1 else "div_final", "must be at least 1")
    if not 0 <= p.mom_min <= p.mom_max < 1:
        raise PlanError("mom_min" if p.mom_min > p.mom_max or p.mom_min < 0 else "mom_max",
                        "one-cycle momenta need 0 <= mom_min <= mom_max < 1")
    if not 0 <= p.momentum < 1:
        raise PlanError("momentum", "must be at least 0 and below 1")
    if not 0 <= p.weight_decay <= 1:
        raise PlanError("weight_decay", "must be between 0 and 1")
    if p.strategy == "fine_tune_top" and not 1 <= p.top_groups <= n_groups:
        has = f"keeps {n_groups} layer groups up to {p.truncate_after}" if n_groups < len(spec.groups) else \
            f"has {n_groups} layer groups"
        raise PlanError("top_groups", f"{spec.title} {has}; fine-tune between 1 and {n_groups}")
    if p.head in ("logreg", "linear_svm") and p.strategy != "feature_extractor":
        raise PlanError("head", f"a scikit-learn {p.head} head only works on frozen features (strategy feature_extractor)")
    if p.head in ("logreg", "linear_svm") and p.augment:
        raise PlanError("augment", f"the {p.head} head is fitted once on fixed features: turn augmentation off")
    if p.head in ("logreg", "linear_svm") and p.bn == "train":
        raise PlanError("bn", f"the {p.head} head trains nothing inside the network: keep BatchNorm frozen")
    _validate_truncation(p, spec)
    from ..kinds import kind_of
    kind_of(p.kind).validate(p)


def _validate_truncation(p: Plan, spec) -> None:
    if not p.truncate_after:
        return
    names = spec.group_names
    if p.truncate_after not in names:
        raise PlanError("truncate_after", f"{spec.title} has no layer group {p.truncate_after!r}; "
                                          f"choose one of {', '.join(names)}")
    if p.strategy not in ("feature_extractor", "fine_tune_top"):
        raise PlanError("truncate_after", "dropping the higher layer groups works with the feature_extractor and "
                                          "fine_tune_top strategies")
