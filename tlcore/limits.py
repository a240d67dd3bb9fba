"""What a host allows one run: epochs, training images, memory. The job runner and the CLI both
check a plan against these before it runs, so a run refused on the dashboard is refused on the
command line too. Read from the TLCORE_* settings (tlcore.settings) or given to the constructor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PlanError

if TYPE_CHECKING:
    from .data import ImageSplits
    from .train.plan import Plan


@dataclass(frozen=True)
class TrainImages:
    """What a run of some kind trains on, and the one setting of that kind that changes it."""
    count: int            # images (or image pairs) it trains on, every arm and phase counted at their largest
    field: str            # the plan field or option a PlanError names ("per_class", "options.pairs")
    option: str           # how people set it, on the page and on the command line
    per_unit: int = 1     # images one unit of that option adds (a class's worth for images per class)
    least: int = 2        # the smallest value the option takes
    fixed: int = 0        # images the run trains on whatever the option says (a lab's own sweep)

    def advice(self, limit: int) -> str:
        most = (limit - self.fixed) // self.per_unit
        if most < self.least:
            return f"this kind of run needs a limit of at least {self.fixed + self.least * self.per_unit:,}"
        return f"set {self.option} to {most:,} or fewer"


def split_images(data: "ImageSplits") -> TrainImages:
    """A run that trains on the plan's own training split: images per class is what changes it."""
    return TrainImages(int(data.train_y.numel()), "per_class", "images per class (--per-class)",
                       per_unit=max(1, data.num_classes))


@dataclass(frozen=True)
class Limits:
    max_epochs: int | None = None
    max_train_images: int | None = None     # what a run trains on (its kind counts it); None: no cap
    max_run_memory_gb: float | None = None  # a plan's estimated peak (tlcore.memory); None: not checked

    @classmethod
    def from_env(cls) -> "Limits":
        """The host's limits. Every TLCORE_* setting is checked here, so a bad one fails at start."""
        from . import settings
        settings.check_all()
        return cls(settings.read("TLCORE_MAX_EPOCHS"), settings.read("TLCORE_MAX_TRAIN_IMAGES"),
                   settings.read("TLCORE_MAX_RUN_MEMORY_GB"))

    def check(self, plan: "Plan", data: "ImageSplits | None" = None) -> None:
        """PlanError naming the field to change if `plan` asks for more than this host allows. What
        counts is what the plan's kind really trains on (tlcore.kinds: its epochs, its images), and the
        advice names a setting that kind has. `data`: the plan's dataset when the caller has it."""
        from .kinds import kind_of
        kind = kind_of(plan.kind)
        if self.max_epochs is not None and kind.epochs is not None:
            epochs, field = kind.epochs(plan)
            if epochs > self.max_epochs:
                raise PlanError(field, f"this server allows at most {self.max_epochs} epochs per run")
        if self.max_train_images is None and self.max_run_memory_gb is None:
            return
        loaded: list = [data]

        def dataset() -> "ImageSplits":
            if loaded[0] is None:
                loaded[0] = _dataset(plan)
            return loaded[0]
        if self.max_train_images is not None:
            what = kind.train_images(plan, dataset) if kind.train_images is not None else split_images(dataset())
            if what.count > self.max_train_images:
                raise PlanError(what.field, f"this run would train on {what.count:,} images and this server allows "
                                            f"at most {self.max_train_images:,}: {what.advice(self.max_train_images)}")
        if self.max_run_memory_gb is not None:
            from .memory import check
            check(plan, int(self.max_run_memory_gb * 2**30), dataset())


def _dataset(plan: "Plan") -> "ImageSplits":
    """The dataset the plan would really use: counted on the data, which the pages have loaded
    already (it is cached), so an uploaded folder's classes and a small default pass."""
    from .data import load_dataset
    return load_dataset(plan.dataset, image_size=plan.resolved_image_size(), per_class=plan.per_class,
                        imbalance=plan.imbalance, seed=plan.seed, path=plan.dataset_path or None,
                        display_name=plan.dataset_name or None)
