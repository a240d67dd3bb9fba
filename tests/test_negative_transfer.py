"""The negative transfer lab's plan: its checks say what to change before anything trains. (The
comparison itself trains five arms per seed; the page's AppTest draws a finished one.)"""
import pytest

from tlcore.errors import PlanError
from tlcore.kinds import kind_of
from tlcore.labs import negative_transfer as nt


def test_the_kind_is_registered_with_its_result_schemas():
    assert set(kind_of("negative_transfer").results) == {nt.RUN, nt.GAP}


def test_bad_settings_get_one_clear_message():
    with pytest.raises(PlanError, match="at least 5 images per class"):
        nt.make_plan(per_class=3)
    with pytest.raises(PlanError, match="from 1 to 10"):
        nt.make_plan(seeds=0)
    assert nt.make_plan(per_class=20, seeds=2).option("seeds") == 2


def test_the_whole_comparison_runs_and_its_gaps_are_wang_et_als_definition(tmp_path, monkeypatch):
    # Real digits, the bundled Lite0, two seeds; the misleading pre-training and the scratch CNN shortened.
    import statistics

    from tlcore.train.events import LabResult, RunEnded
    monkeypatch.setattr(nt, "MISLEAD_STEPS", 4)
    monkeypatch.setattr(nt, "SCRATCH_EPOCHS", 2)
    plan = nt.make_plan(per_class=10, seeds=2, image_size=32).replace(device="cpu")
    events = []
    nt.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    runs = [e.values for e in events if isinstance(e, LabResult) and e.schema == nt.RUN]
    assert sorted((v["arm"], v["seed"]) for v in runs) == sorted((a, s) for a in (*nt.SOURCES, *nt.WITHOUT)
                                                                  for s in (0, 1))
    acc = {(v["arm"], v["seed"]): v["target_acc"] for v in runs}
    gaps = {e.values["source"]: e.values for e in events if isinstance(e, LabResult) and e.schema == nt.GAP}
    assert set(gaps) == set(nt.SOURCES)
    for src, g in gaps.items():
        # target error with the source minus target error without it, averaged over the seeds
        want = statistics.mean((1 - acc[src, s]) - (1 - acc["scratch", s]) for s in (0, 1))
        assert g["gap_vs_scratch"] == pytest.approx(want) and g["seeds"] == 2
    assert statistics.mean(acc["imagenet", s] for s in (0, 1)) > 0.3    # ten classes: chance is 0.1
    assert all(0.0 <= a <= 1.0 for a in acc.values())
