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
