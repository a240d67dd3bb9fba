"""Host limits on a plan: what a shared server allows per run."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import PlanError
from ..train.plan import Plan


@dataclass(frozen=True)
class Limits:
    max_epochs: int | None = None
    max_train_images: int | None = None     # caps per_class * classes; None: no cap

    @classmethod
    def from_env(cls) -> "Limits":
        def num(name: str) -> int | None:
            v = os.environ.get(name)
            return int(v) if v else None
        return cls(num("TLCORE_MAX_EPOCHS"), num("TLCORE_MAX_TRAIN_IMAGES"))

    def check(self, plan: Plan) -> None:
        if self.max_epochs is not None and plan.epochs > self.max_epochs:
            raise PlanError("epochs", f"this server allows at most {self.max_epochs} epochs per run")
        if self.max_train_images is not None:
            n, k = self._train_images(plan)
            if n > self.max_train_images:
                raise PlanError("per_class", f"this run would train on {n:,} images and this server allows at most "
                                             f"{self.max_train_images:,}: set images per class to "
                                             f"{max(2, self.max_train_images // k)} or fewer")

    @staticmethod
    def _train_images(plan: Plan) -> tuple[int, int]:
        """(training images, classes) the plan would really use: counted on the dataset, which the pages
        have loaded already (it is cached), so an uploaded folder's classes and a small default pass."""
        from ..data import load_plan_data
        data = load_plan_data(plan)
        return int(data.train_y.numel()), data.num_classes
