"""Where to transfer's lesson: on data unlike ImageNet (the bundled 8x8 digits) a middle layer group's
features beat the top group's, by a margin, so the network should be cut lower. The layer probe at
the page's plan (EfficientNet-Lite0, feature extractor, every training image) at the size the page
uses on a CPU (the default plan's, 96 px) and at 32 px, where the margin is larger, seeds 0, 1, 2. The seed only shuffles the probe's cross-validation folds (the split is fixed and
every image is used), so the pooled features are computed once and read from a cache the seeds share."""
from __future__ import annotations

import time

import pytest
import torch

from tlcore.kinds import run_plan
from tlcore.labs import probe
from tlcore.models import MODELS
from tlcore.train.events import LabResult, RunEnded
from tlcore.train.plan import CPU_IMAGE_SIZE, Plan

pytestmark = pytest.mark.lessons

SEEDS = (0, 1, 2)
# px -> the margin the best middle group must beat the top group by, in accuracy (359 validation images).
# Measured (one thread): at 96 px stage4 0.986 against top 0.967 (7 images); at 64 px stage3 0.983 against
# 0.967; at 32 px stage3 0.986 against 0.877 (39 images): the smaller the input, the less the top fits.
# Per seed 0, 1, 2 since the pass runs on the folded fp32 copy (issue 29): 96 px 0.019, 0.017, 0.019
# (before: 0.019, 0.017, 0.017); 32 px 0.109 each, as before.
MARGINS = {CPU_IMAGE_SIZE: 0.015, 32: 0.05}


def lesson_plan(seed: int, size: int) -> Plan:
    """The Where-to-transfer page's probe plan (views/where_to_transfer.py) on the default plan's
    dataset and model, at `size` px."""
    return Plan(kind="probe", dataset="digits", model="efficientnet_lite0", strategy="feature_extractor",
                head="linear", image_size=size, seed=seed)


@pytest.mark.parametrize("size", list(MARGINS))
def test_on_digits_a_middle_group_beats_the_top_group_by_a_margin(size, lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))   # the seeds share the pooled features
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # CPU kernels are deterministic at a fixed thread count
    names = MODELS["efficientnet_lite0"].group_names
    margins, rows, cpu = {}, [], time.process_time()
    try:
        for seed in SEEDS:
            events = []
            run_plan(lesson_plan(seed, size), events.append, artifact_dir=tmp_path / str(seed))
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
    holds = all(m >= MARGINS[size] for m in margins.values())
    lesson.record(claim="on digits a middle layer group beats the top one by a margin: cut the network lower",
                  settings=f"digits (all images), EfficientNet-Lite0, {size} px"
                           f"{' (the page default on a CPU)' if size == CPU_IMAGE_SIZE else ''}, linear probe per group",
                  figure=f"{size} px: best middle group - top group probe accuracy (0 if the best is not a middle group)",
                  per_seed=margins, holds=holds)
    assert holds, f"margins {margins} (need >= {MARGINS[size]} with a middle group best):\n" + "\n".join(rows)
