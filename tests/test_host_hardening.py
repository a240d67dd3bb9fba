"""A shared host that holds (issue 25): each test is one row of the attack table, fixed at its cause."""
from __future__ import annotations

import tlcore.labs  # noqa: F401  (every kind and subcommand registered, as the entry points have them)
from tlcore import __main__ as cli
from tlcore.runs import RunStore
from tlcore.train.events import RunStarted
from tlcore.train.plan import Plan


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --- row 9: exporting a run that is still running ------------------------------------------------------
def test_export_of_a_run_still_running_is_refused_for_that_reason(capsys):
    store = RunStore()
    plan = Plan(image_size=32, per_class=8)
    run_id = store.create(plan, owner="cli")
    store.append(run_id, RunStarted(plan.to_dict(), "cpu", 10, 90, ("stem", "top"), 8, 8, ("a", "b")))
    assert cli.main(["export", run_id]) == 2
    err = _one_line_error(capsys)
    assert "still running" in err and "ended before an epoch" not in err
