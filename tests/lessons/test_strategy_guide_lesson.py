"""The strategy guide's lesson: it places the bundled digits (8x8 line drawings, nothing like ImageNet)
in the "different" row and a photo set in the "similar" row. The guide's similarity run (its page's
plan: the default plan's EfficientNet-Lite0 at the CPU's default 96 px) on digits and on an offline
photo set of materials (tests/lessons/photo_sets.py: crops of the photos shipped in scikit-image,
classes told apart by content only), seeds 0, 1, 2 (the seed draws the probe's sample).
Measured (one thread, codes from the folded fp32 copy since issue 29, the same as before): CNN - pixels
digits -0.035, -0.068, -0.040; materials 0.788, 0.795, 0.830."""
from __future__ import annotations

import time

import pytest
import torch

from tlcore.advisor import CLEAR_GAIN
from tlcore.kinds import run_plan
from tlcore.labs import similarity
from tlcore.train.events import LabResult, RunEnded
from tlcore.train.plan import CPU_IMAGE_SIZE, Plan

from lessons import photo_sets   # tests/lessons/photo_sets.py (tests/ is on sys.path; lessons is a package)

pytestmark = pytest.mark.lessons

SEEDS = (0, 1, 2)


def _estimate(plan: Plan, tmp_path) -> dict:
    events = []
    run_plan(plan.replace(kind="similarity", strategy="feature_extractor", head="linear"), events.append,
             artifact_dir=tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    return next(e.values for e in events if isinstance(e, LabResult) and e.schema == similarity.SCHEMA)


def test_digits_are_different_and_a_photo_set_is_similar(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))
    photos = photo_sets.write(tmp_path / "materials", "textures")
    sets = {"digits": Plan(dataset="digits", image_size=CPU_IMAGE_SIZE),
            "materials": Plan(dataset="folder", dataset_path=str(photos), dataset_name="materials",
                              image_size=CPU_IMAGE_SIZE)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # CPU kernels are deterministic at a fixed thread count
    gains: dict[str, dict[int, float]] = {name: {} for name in sets}
    verdicts, rows, cpu = {name: {} for name in sets}, [], time.process_time()
    try:
        for name, plan in sets.items():
            for seed in SEEDS:
                v = _estimate(plan.replace(seed=seed), tmp_path / f"{name}{seed}")
                gains[name][seed] = v["cnn_accuracy"] - v["pixel_accuracy"]
                verdicts[name][seed] = v["verdict"]
                rows.append(f"{name} seed {seed}: CNN codes {v['cnn_accuracy']:.3f}, pixels {v['pixel_accuracy']:.3f}"
                            f" ({v['samples']} images) -> {v['verdict']}")
    finally:
        torch.set_num_threads(threads)
    print("\n" + "\n".join(rows) + f"\nCPU {time.process_time() - cpu:.0f} s")
    expected = {"digits": "different", "materials": "similar"}
    for name in sets:
        lesson.record(claim="the strategy guide puts digits in 'different' and a photo set in 'similar'",
                      settings=f"{name}, EfficientNet-Lite0 codes vs raw pixels, {CPU_IMAGE_SIZE} px, "
                               f"similar when CNN - pixels >= {CLEAR_GAIN}",
                      figure=f"{name}: CNN - pixel probe accuracy", per_seed=gains[name],
                      holds=all(v == expected[name] for v in verdicts[name].values()))
    for name in sets:
        assert all(v == expected[name] for v in verdicts[name].values()), "\n".join(rows)
