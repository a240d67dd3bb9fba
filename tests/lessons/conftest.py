"""The lessons suite (`python -m pytest -m lessons`): each lab at its page defaults over several seeds,
its lesson asserted. Every lesson test records its per-seed figure through `lesson`; the suite ends
with one table of them (printed, and written to test-artifacts/lessons/table.md for README)."""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

# One thread per run, however the suite is started (two xdist workers, or one process): CPU kernels
# give the same numbers at a fixed thread count, so a lesson's per-seed figures are the same anywhere.
os.environ.setdefault("TLCORE_CPU_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-artifacts" / "lessons"
SEEDS = (0, 1, 2)


class Lesson:
    """One row of the lessons table: a lab's claim, the settings it ran at, its figure per seed."""

    def __init__(self, lab: str) -> None:
        self.lab, self.t0 = lab, time.perf_counter()

    def record(self, *, claim: str, settings: str, figure: str, per_seed: dict[int, float], holds: bool) -> None:
        values = list(per_seed.values())
        row = {"lab": self.lab, "claim": claim, "settings": settings, "figure": figure,
               "per_seed": {str(k): round(v, 4) for k, v in per_seed.items()},
               "mean": round(statistics.fmean(values), 4),
               "spread": round(max(values) - min(values), 4), "verdict": "holds" if holds else "FAILS",
               "seconds": round(time.perf_counter() - self.t0, 1), "cpu": cpu_model()}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{self.lab}-{figure}.json".replace("/", "_").replace(" ", "_")).write_text(json.dumps(row))


@pytest.fixture
def lesson(request) -> Lesson:
    return Lesson(request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removesuffix("_lesson"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()
