"""The teacher's view: a key the host sets, every run of the class live, a leaderboard per lesson, and
the one deliberate exception to ownership: the teacher may stop any run."""
from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from fakes import fake_train, until_stopped
from test_app import ROOT
from tlcore import teacher
from tlcore.errors import NotOwner
from tlcore.jobs import JobRunner
from tlcore.runs import RunStore
from tlcore.train.plan import Plan



def test_only_the_hosts_key_makes_a_teacher(monkeypatch):
    monkeypatch.delenv("TLCORE_TEACHER_KEY", raising=False)
    assert not teacher.is_teacher("anything") and not teacher.is_teacher("")
    monkeypatch.setenv("TLCORE_TEACHER_KEY", "s3cret-teacher-key-0123")
    assert teacher.is_teacher("s3cret-teacher-key-0123") and not teacher.is_teacher("s3cret-teacher-key-012")
    assert not teacher.is_teacher(None)


def test_the_teacher_can_stop_any_run_and_a_student_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_TEACHER_KEY", "s3cret-teacher-key-0123")
    runner = JobRunner(RunStore(tmp_path), backend="thread", train_fn=until_stopped)
    run_id = runner.submit(Plan(), owner="alice")
    with pytest.raises(NotOwner):
        runner.stop(run_id, owner="bob", teacher_key="guess")
    runner.stop(run_id, owner="", teacher_key="s3cret-teacher-key-0123")
    assert runner.wait(run_id, 60) == "stopped"
    runner.shutdown()


def test_the_leaderboard_ranks_each_students_best_run_of_the_lesson(tmp_path):
    store = RunStore(tmp_path)
    for owner, acc, lesson in (("a", 0.5, "week3"), ("a", 0.7, "week3"), ("b", 0.6, "week3"), ("c", 0.9, "other")):
        run_id = store.create(Plan(epochs=1), owner=owner, lesson=lesson)
        fake_train(Plan(epochs=1), lambda e, r=run_id: store.append(r, e), lambda: False, None)
        from sqlalchemy import update
        from tlcore.store.schema import runs
        with store.db.write() as c:
            c.execute(update(runs).where(runs.c.id == run_id).values(val_acc=acc))
    board = teacher.leaderboard(store.list(), "week3")
    assert [(s.rank, s.val_acc) for s in board] == [(1, 0.7), (2, 0.6)]
    assert board[0].who == teacher.pseudonym("a") and "a" != board[0].who
    assert teacher.lessons(store.list())[0] in ("week3", "other")


def test_the_teacher_page_asks_for_the_key_then_lists_the_class(monkeypatch):
    monkeypatch.setenv("TLCORE_TEACHER_KEY", "s3cret-teacher-key-0123")
    RunStore().create(Plan(), owner="someone", lesson="week3")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(str(ROOT / "views" / "teacher.py")).run()
    assert not at.exception and not at.dataframe
    at.text_input[0].set_value("wrong").run()
    assert any("not this server's teacher key" in e.value for e in at.error)
    from ui import services   # a wrong guess slows the next one down: an hour later, it is compared again
    gate = services.teacher_gate()
    later = gate.clock() + 3600
    gate.clock = lambda: later
    at.text_input[0].set_value("s3cret-teacher-key-0123").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["lesson"]) == ["week3"] and table["who"][0].startswith("student ")


def test_a_run_started_from_a_lesson_link_is_on_that_lessons_board():
    from test_app import page
    from ui import services

    at = page("train", lesson="week3", image_size="32", epochs="1", per_class="5")
    next(b for b in at.button if b.label == "Start training").click().run()
    run_id = at.session_state["run_id"]
    assert services.store().list()[0].lesson == "week3"
    services.runner().stop(run_id, owner=at.session_state["owner"])
