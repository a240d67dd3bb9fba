"""Every plan control in one table: its label, its widget and its bounds.

The pages draw their controls from this table (through `state.control`) and the link parser checks a
link's values against the same table (`check`), so a link can never ask for a value its control
could not show: out of bounds, the link's value is ignored with a note instead of crashing the page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from tlcore.train.plan import HEADS, SCHEDULES, STRATEGIES

Widget = Literal["radio", "selectbox", "number", "slider", "select_slider", "toggle"]

STRATEGY_LABELS = {
    "feature_extractor": "Feature extractor (frozen backbone, new head)",
    "fine_tune_top": "Fine-tune the top layer groups",
    "fine_tune_all": "Fine-tune everything",
    "gradual_unfreeze": "Gradual unfreezing (ULMFiT)",
    "scratch": "Train from scratch (random weights)",
    "pixel_svm": "SVM on raw pixels (no network)",
}
SCHEDULE_LABELS = {"stlr": "slanted triangular (STLR)", "constant": "constant", "cosine": "cosine",
                   "one_cycle": "one-cycle"}
MAX_SEED = 2**32 - 1      # what torch and numpy accept as a seed


@dataclass(frozen=True)
class Control:
    field: str
    label: str
    widget: Widget
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple = ()          # the options (radio, selectbox) or the stops (select_slider)
    between: bool = False        # a value inside [lo, hi] that is not one of the choices is allowed too
    labels: dict = field(default_factory=dict)   # option -> what the learner reads
    help: str | None = None
    horizontal: bool = False
    zero_is_none: bool = False   # the widget's 0 stands for the plan's None ("all")

    @property
    def is_float(self) -> bool:
        return isinstance(self.step, float) or any(isinstance(c, float) for c in self.choices)

    def limits(self, hi: float | None = None) -> tuple[float | None, float | None]:
        """(lo, hi), with `hi` lowered by the host (e.g. its epoch limit)."""
        return self.lo, self.hi if hi is None or self.hi is None else min(self.hi, hi)

    def check(self, value: Any, hi: float | None = None) -> str | None:
        """None when a link may set the plan to `value`; otherwise why not, in a few words."""
        if self.zero_is_none and value is None:
            return None
        if self.widget == "toggle":
            return None if isinstance(value, bool) else "must be on or off"
        lo, top = self.limits(hi)
        if self.choices and value in self.choices:
            return None
        if self.choices and not self.between:
            return "must be one of " + ", ".join(str(c) for c in self.choices)
        if lo is not None and value < lo or top is not None and value > top:
            return f"must be between {lo:g} and {top:g}"
        return None

    def options(self, current: Any) -> list:
        """The choices offered, with the plan's own value added when it lies between them."""
        opts = list(self.choices)
        if current not in opts and current is not None and self.check(current) is None:
            opts = sorted([*opts, current])
        return opts

    def to_widget(self, value: Any, hi: float | None = None) -> Any:
        if self.zero_is_none and value is None:
            value = 0
        if self.widget in ("number", "slider"):
            lo, top = self.limits(hi)
            value = min(max(value, lo), top)   # a host may allow less than a stored plan asks for
            return float(value) if self.is_float else int(value)
        return value

    def from_widget(self, value: Any) -> Any:
        if self.zero_is_none and not value:
            return None
        if self.widget in ("number", "slider"):
            return float(value) if self.is_float else int(value)
        return value

    def format(self) -> Callable[[Any], str]:
        if self.labels:
            return lambda v: self.labels.get(v, str(v))
        return (lambda v: f"{v:g}") if self.is_float else str


LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
IMAGE_SIZES = (0, 32, 64, 96, 128, 160, 224)

CONTROLS: dict[str, Control] = {c.field: c for c in (
    # Data page
    Control("per_class", "Images per class for training (0 = all)", "number", 0, 10000, 10, zero_is_none=True),
    Control("imbalance", "Class imbalance (largest ÷ smallest class)", "slider", 1.0, 20.0, 0.5),
    Control("image_size", "Image size fed to the model (px)", "selectbox", 16, 224, choices=IMAGE_SIZES,
            between=True, labels={0: "model default", **{s: f"{s} px" for s in IMAGE_SIZES[1:]}}),
    # Model and Train pages
    Control("strategy", "Strategy", "radio", choices=STRATEGIES, labels=STRATEGY_LABELS),
    Control("top_groups", "Top layer groups to fine-tune", "slider", 1, 20, 1),
    Control("head", "Head", "selectbox", choices=HEADS,
            help="logreg / linear_svm: a scikit-learn classifier on the frozen features (feature extractor only)"),
    Control("bn", "BatchNorm in frozen groups", "radio", choices=("frozen", "train"), horizontal=True,
            help="frozen: keeps ImageNet's statistics (Keras); train: its scale and shift keep learning (fastai)"),
    Control("augment", "Augment (random crops and flips on the device)", "toggle"),
    Control("epochs", "Epochs", "number", 1, 100, 1),
    Control("batch_size", "Batch size", "selectbox", 1, 256, choices=(16, 32, 64, 128, 256), between=True),
    Control("lr", "Learning rate (head)", "select_slider", 1e-5, 1e-1, choices=LRS, between=True),
    Control("optimizer", "Optimiser", "selectbox", choices=("adamw", "sgd")),
    Control("factor", "Discriminative factor (1 = off)", "number", 1.0, 10.0, 0.1),
    Control("schedule", "Schedule", "selectbox", choices=("stlr", "constant", "cosine", "one_cycle"),
            labels=SCHEDULE_LABELS),
    Control("cut_frac", "STLR cut_frac (warm-up share)", "slider", 0.01, 0.5, 0.01),
    Control("ratio", "STLR ratio (peak ÷ lowest)", "number", 1.0, 1000.0, 1.0),
    Control("warmup_frac", "Warm-up share", "slider", 0.0, 0.5, 0.01),
    Control("seed", "Seed", "number", 0, MAX_SEED, 1),
    # one-cycle (fastai's fit_one_cycle defaults)
    Control("pct_start", "One-cycle warm-up share (pct_start)", "slider", 0.05, 0.95, 0.05),
    Control("div", "One-cycle div (peak ÷ starting lr)", "number", 1.0, 1000.0, 1.0),
    Control("div_final", "One-cycle div_final (peak ÷ final lr)", "select_slider", 1.0, 1e7,
            choices=(1e2, 1e3, 1e4, 1e5, 1e6), between=True, labels={v: f"{v:.0e}" for v in (1e2, 1e3, 1e4, 1e5, 1e6)}),
    Control("mom_max", "Momentum / beta1 at the start and end", "slider", 0.5, 0.99, 0.01),
    Control("mom_min", "Momentum / beta1 at the peak rate", "slider", 0.5, 0.99, 0.01),
)}
assert set(CONTROLS["schedule"].choices) == set(SCHEDULES)

# Plan fields a link may set that have no bounded control of their own: the plan's own validation
# (choices from the registries) is their table. Paths and names never come from a link.
UNBOUNDED = ("dataset", "model", "momentum", "weight_decay", "device", "truncate_after", "deterministic")
NEVER_FROM_LINK = ("dataset_path", "dataset_name", "kind", "options")   # a lab's page builds its own plans


def truncate_control(group_names: tuple[str, ...]) -> Control:
    """"Keep the layer groups up to ...": its choices are the chosen model's groups."""
    return Control("truncate_after", "Keep the layer groups up to", "selectbox", choices=("", *group_names),
                   labels={"": "all of them (the whole backbone)", **{g: f"{g} (drop the groups above it)"
                                                                     for g in group_names}},
                   help="For a small dataset unlike ImageNet the lecture notes advise dropping the higher "
                        "groups too and training the head on a middle group's output")


def draw(c: Control, where: Any, *, key: str, current: Any, disabled: bool, hi: float | None = None) -> Any:
    """One Streamlit widget for control `c`, bound to `key` in session state (which holds its value)."""
    common = dict(key=key, disabled=disabled, help=c.help)
    if c.widget == "radio":
        return where.radio(c.label, c.options(current), format_func=c.format(), horizontal=c.horizontal, **common)
    if c.widget == "selectbox":
        return where.selectbox(c.label, c.options(current), format_func=c.format(), **common)
    if c.widget == "select_slider":
        return where.select_slider(c.label, c.options(current), format_func=c.format(), **common)
    if c.widget == "toggle":
        return where.toggle(c.label, **common)
    lo, top = c.limits(hi)
    kind = float if c.is_float else int
    make = where.number_input if c.widget == "number" else where.slider
    return make(c.label, min_value=kind(lo), max_value=kind(top), step=kind(c.step), **common)
