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
class Limits:
    max_epochs: int | None = None
    max_train_images: int | None = None     # caps per_class * classes; None: no cap
    max_run_memory_gb: float | None = None  # a plan's estimated peak (tlcore.memory); None: not checked

    @classmethod
    def from_env(cls) -> "Limits":
        """The host's limits. Every TLCORE_* setting is checked here, so a bad one fails at start."""
        from . import settings
        settings.check_all()
        return cls(settings.read("TLCORE_MAX_EPOCHS"), settings.read("TLCORE_MAX_TRAIN_IMAGES"),
                   settings.read("TLCORE_MAX_RUN_MEMORY_GB"))

    def check(self, plan: "Plan", data: "ImageSplits | None" = None) -> None:
        """PlanError naming the field to change if `plan` asks for more than this host allows.
        `data`: the plan's dataset when the caller has it (it is loaded, from its cache, otherwise)."""
        if self.max_epochs is not None and plan.epochs > self.max_epochs:
            raise PlanError("epochs", f"this server allows at most {self.max_epochs} epochs per run")
        if self.max_train_images is None and self.max_run_memory_gb is None:
            return
        data = data if data is not None else _dataset(plan)
        if self.max_train_images is not None:
            n, k = int(data.train_y.numel()), data.num_classes
            if n > self.max_train_images:
                raise PlanError("per_class", f"this run would train on {n:,} images and this server allows at most "
                                             f"{self.max_train_images:,}: set images per class to "
                                             f"{max(2, self.max_train_images // k)} or fewer")
        if self.max_run_memory_gb is not None:
            from .memory import check
            check(plan, int(self.max_run_memory_gb * 2**30), data)


def _dataset(plan: "Plan") -> "ImageSplits":
    """The dataset the plan would really use: counted on the data, which the pages have loaded
    already (it is cached), so an uploaded folder's classes and a small default pass."""
    from .data import load_dataset
    return load_dataset(plan.dataset, image_size=plan.resolved_image_size(), per_class=plan.per_class,
                        imbalance=plan.imbalance, seed=plan.seed, path=plan.dataset_path or None,
                        display_name=plan.dataset_name or None)
