"""Negative transfer's lesson, at the page's defaults over 3 seeds: a good source helps (ImageNet,
read at Lite0's middle group) and a poor one hurts (the misleading source), each beyond its spread
over seeds, against the stronger arm without a source."""
import pytest

from tlcore.labs import negative_transfer as nt
from tlcore.train.events import LabResult, RunEnded

pytestmark = pytest.mark.lessons
SEEDS = (0, 1, 2)    # the suite's seeds (conftest.SEEDS): the page's default first seed and count


class _Run:
    def __init__(self, events):
        self.results = [e for e in events if isinstance(e, LabResult)]


# Not yet shown at the defaults (issue 23, item 3, open): measured on seeds 0-2, ImageNet's gap against the
# pixel SVM is -0.013 with a spread of 0.020 and the misleading source's +0.020 with a spread of 0.042,
# both within their spread. Strict: the day both signs show, this fails until the mark goes.
@pytest.mark.xfail(strict=True, reason="neither sign is beyond its spread over seeds at the page's defaults yet")
def test_a_good_source_helps_and_a_misleading_one_hurts(tmp_path, lesson):
    d = nt.DEFAULTS
    assert d["seeds"] == len(SEEDS) and d["seed"] == SEEDS[0]
    plan = nt.make_plan().replace(device="cpu")         # exactly the page's defaults
    events = []
    nt.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    base, rows = nt.verdicts(nt.per_seed(_Run(events)))
    by = {r["source"]: r for r in rows}
    settings = f"digits, {d['per_class']}/class, Lite0 {nt.CUT} at {d['image_size']} px, seeds {list(SEEDS)}"
    help_, hurt = by["imagenet"], by["misleading"]
    lesson.record(claim=f"ImageNet features help: gap vs {base} < 0 beyond its spread", settings=settings,
                  figure="gap imagenet", per_seed=help_["gaps"], holds=help_["verdict"] == "helped")
    lesson.record(claim=f"a misleading source hurts: gap vs {base} > 0 beyond its spread", settings=settings,
                  figure="gap misleading", per_seed=hurt["gaps"], holds=hurt["verdict"] == "hurt")
    assert help_["gap"] < 0 and -help_["gap"] > help_["spread"], help_
    assert hurt["gap"] > 0 and hurt["gap"] > hurt["spread"], hurt
