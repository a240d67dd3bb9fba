"""Any input gives a valid plan or one plain error, never another exception (issue 25, rows 8 and 12):
`Plan.from_dict` over arbitrary dicts, a link's values through the link parser, and every CLI
subcommand over arbitrary options and values (exit 0 with a plan, or exit 2 with one line)."""
from __future__ import annotations

import argparse
import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tlcore.labs  # noqa: F401  (every kind and subcommand registered, as the entry points have them)
from tlcore import __main__ as main_module
from tlcore import cli
from tlcore.errors import PlanError
from tlcore.train.plan import Plan

FIELDS = [f.name for f in dataclasses.fields(Plan)]
TRICKY_TEXT = ["nope", "", "0", "-1", "1e309", "-1e309", "nan", "inf", "99999999999999999999999", "digits", "folder",
               "cuda", "mps", "cpu", "resnet18", "efficientnet_lite0", "X.zip", "true", "None", "fine_tune_all",
               "digit_pairs", "stage3", "1.5", "\x00", "é"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -10**400, 2**64]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(TRICKY_TEXT), st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _plan_or_plan_error(d: dict) -> None:
    try:
        plan = Plan.from_dict(d)
    except PlanError as e:
        assert "\n" not in str(e)
        return
    assert Plan.from_json(plan.to_json()) == plan   # what is accepted also survives the run store


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3))
def test_any_values_of_plan_fields_give_a_plan_or_a_plan_error(d):
    _plan_or_plan_error(d)


@SETTINGS
@given(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), VALUES, max_size=6))
def test_any_dict_gives_a_plan_or_a_plan_error(d):
    _plan_or_plan_error(d)


@SETTINGS
@given(st.sampled_from(["train", "probe", "dann", "multitask", "negative_transfer", "lr_find", "cut_finetune",
                        "similarity", "no_such_kind"]),
       st.dictionaries(st.sampled_from(["seeds", "pairs", "b_labels", "width", "related", "weighting", "w_a", "w_b",
                                        "target", "arms", "network", "head_at", "size", "domain_weight", "cuts",
                                        "epochs_per_cut", "start", "end", "steps", "nope"]), VALUES, max_size=4))
def test_any_kind_and_options_give_a_plan_or_a_plan_error(kind, options):
    _plan_or_plan_error({"kind": kind, "options": options})


# --- a link's values ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def link_value():
    from ui import state
    return state.link_value


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=10),
                                                             st.integers().map(str), st.floats().map(str))),
                max_size=5))
def test_any_link_gives_a_plan_or_notes_what_it_ignored(link_value, pairs):
    from ui.state import default_plan
    base = default_plan().to_dict()
    for name, text in pairs:   # as the link parser does: the control's bounds first, then the plan's own rules
        value, why = link_value(name, text)
        assert why is None or ("\n" not in why and why)
        if why is None:
            base[name] = value
    _plan_or_plan_error(base)


# --- every subcommand -------------------------------------------------------------------------------------
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = main_module._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(set(_subparsers()) - {"prefetch"})   # prefetch downloads: tests never touch the network


@pytest.fixture
def no_runs(monkeypatch):
    """A command that gets as far as running a plan stops there: the plan was valid, nothing trains."""
    built: list = []

    def here(plan, summary):
        assert isinstance(plan, Plan)
        built.append(plan)
        return 0
    monkeypatch.setattr(cli, "run_plan_here", here)
    monkeypatch.setattr(main_module, "run_plan_here", here)
    parser = main_module._parser()   # built once: parsing does not change it, and building it is most of a call
    monkeypatch.setattr(main_module, "_parser", lambda: parser)
    return built


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_takes_any_options_and_values_to_a_plan_or_exit_2(command, no_runs, capsys):
    sub = _subparsers()[command]
    flags = [a.option_strings[-1] for a in sub._actions if a.option_strings and a.dest != "help"] + ["--nope"]
    text = st.one_of(st.sampled_from(TRICKY_TEXT), st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                                               max_size=8),
                     st.integers(min_value=-10**6, max_value=10**20).map(str),
                     st.floats(allow_nan=True).map(lambda f: repr(f) if math.isfinite(f) else str(f)))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(flags), st.one_of(st.none(), text)), max_size=5),
           st.lists(text, max_size=2))
    def check(options, positionals):
        argv = [command, *positionals]
        for flag, value in options:
            argv += [flag] if value is None else [flag, value]
        try:
            code = main_module.main(argv)
        except SystemExit as e:   # argparse: its one line (tlcore.cli.Parser.error), exit 2
            code = e.code
        err = capsys.readouterr().err.strip()
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            assert err.startswith("error:") and "Traceback" not in err and len(err.splitlines()) == 1, (argv, err)
    check()
