"""Negative transfer's lesson, at the page's defaults over 3 seeds: a related source helps (a small CNN
taught the digits on photos) and a misleading one hurts (the same CNN on the same images, taught which
photo is behind each digit), each beyond its spread over seeds, against the stronger arm without a
source; and the misleading source is worse than the same network untrained: what it learned hurts."""
import pytest

from tlcore.labs import negative_transfer as nt
from tlcore.train.events import LabResult, RunEnded

pytestmark = pytest.mark.lessons
SEEDS = (0, 1, 2)    # the suite's seeds (conftest.SEEDS): the page's default first seed and count


class _Run:
    def __init__(self, events):
        self.results = [e for e in events if isinstance(e, LabResult)]


def test_a_related_source_helps_and_a_misleading_one_hurts(tmp_path, lesson):
    d = nt.DEFAULTS
    assert d["seeds"] == len(SEEDS) and d["seed"] == SEEDS[0]
    plan = nt.make_plan().replace(device="cpu")         # exactly the page's defaults
    events = []
    nt.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    accs = nt.per_seed(_Run(events))
    base, rows = nt.verdicts(accs)
    by = {r["source"]: r for r in rows}
    settings = f"digits, {d['per_class']}/class, sources on the other half on photos, Lite0 {nt.CUT} at " \
               f"{d['image_size']} px, seeds {list(SEEDS)}"
    helps, hurts, imagenet = by["related"], by["misleading"], by["imagenet"]
    lesson.record(claim=f"a related source helps: gap vs {base} < 0 beyond its spread", settings=settings,
                  figure="gap related", per_seed=helps["gaps"], holds=helps["verdict"] == "helped")
    lesson.record(claim=f"a misleading source hurts: gap vs {base} > 0 beyond its spread", settings=settings,
                  figure="gap misleading", per_seed=hurts["gaps"], holds=hurts["verdict"] == "hurt")
    worse = {s: accs["misleading"][s] - accs["random_init"][s] for s in SEEDS}
    lesson.record(claim="the misleading source scores below the same network untrained", settings=settings,
                  figure="misleading - untrained accuracy", per_seed=worse, holds=max(worse.values()) < 0)
    lesson.record(claim=f"(recorded, not asserted) ImageNet's {nt.CUT} does not beat pixels on 8x8 digits",
                  settings=settings, figure="gap imagenet", per_seed=imagenet["gaps"],
                  holds=imagenet["verdict"] != "helped")
    assert helps["gap"] < 0 and -helps["gap"] > helps["spread"], helps
    assert hurts["gap"] > 0 and hurts["gap"] > hurts["spread"], hurts
    assert max(worse.values()) < 0, worse
