"""Where to transfer's lesson: on data unlike ImageNet (the bundled 8x8 digits) a middle layer group's
features beat the top group's, by a margin, so the network should be cut lower. The layer probe at
the page's plan (EfficientNet-Lite0, feature extractor, every training image) at LESSON_SIZE px,
seeds 0, 1, 2. The seed only shuffles the probe's cross-validation folds (the split is fixed and
every image is used), so the pooled features are computed once and read from a cache the seeds share."""
from __future__ import annotations

import statistics
import time

import pytest
import torch

from tlcore.kinds import run_plan
from tlcore.labs import probe
from tlcore.models import MODELS
from tlcore.train.events import LabResult, RunEnded
from tlcore.train.plan import Plan

pytestmark = pytest.mark.lessons

SEEDS = (0, 1, 2)
LESSON_SIZE = 32   # px: the CPU-affordable size the lesson was measured at (the CLI: --image-size 32)
MARGIN = 0.05      # best middle group over the top group, in accuracy: 18 of 359 validation images


def lesson_plan(seed: int) -> Plan:
    """The Where-to-transfer page's probe plan (views/where_to_transfer.py) on the default plan's
    dataset and model, at LESSON_SIZE px."""
    return Plan(kind="probe", dataset="digits", model="efficientnet_lite0", strategy="feature_extractor",
                head="linear", image_size=LESSON_SIZE, seed=seed)


def test_on_digits_a_middle_group_beats_the_top_group_by_a_margin(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))   # the seeds share the pooled features
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # CPU kernels are deterministic at a fixed thread count
    names = MODELS["efficientnet_lite0"].group_names
    margins, rows, cpu = {}, [], time.process_time()
    try:
        for seed in SEEDS:
            events = []
            run_plan(lesson_plan(seed), events.append, artifact_dir=tmp_path / str(seed))
            assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
            groups = sorted((e.values for e in events if isinstance(e, LabResult) and e.schema == probe.GROUP_SCHEMA),
                            key=lambda r: r["index"])
            assert [g["group"] for g in groups] == list(names)
            best = probe.best_group(groups)
            top = groups[-1]
            margins[seed] = best["val_acc"] - top["val_acc"] if best["index"] not in (0, len(names) - 1) else 0.0
            rows.append(f"seed {seed}: " + ", ".join(f"{g['group']} {g['val_acc']:.3f}" for g in groups)
                        + f"; best {best['group']}")
    finally:
        torch.set_num_threads(threads)
    print("\n" + "\n".join(rows) + f"\nCPU {time.process_time() - cpu:.0f} s")
    holds = all(m >= MARGIN for m in margins.values())
    lesson.record(claim="on digits a middle layer group beats the top one by a margin: cut the network lower",
                  settings=f"digits (all images), EfficientNet-Lite0, {LESSON_SIZE} px, linear probe per group",
                  figure="best middle group - top group probe accuracy (0 if the best is not a middle group)",
                  per_seed=margins, holds=holds)
    assert holds, f"margins {margins} (need >= {MARGIN} with a middle group best):\n" + "\n".join(rows)
