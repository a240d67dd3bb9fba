"""`python -m tlcore`: help for every option, readable run listings, one-line errors for bad input,
and the host's limits and the dataset's notes on the command line as on the dashboard."""
from __future__ import annotations

import dataclasses
import io
import json
import re
import time
import zipfile

import pytest
from PIL import Image

from tlcore import __main__ as cli
from tlcore import cli as cli_parts   # the subcommands' machinery; __main__ only calls it
from tlcore.runs import RunStore
from tlcore.train.plan import Plan


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:   # argparse's --help and usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _option_help(text: str) -> dict[str, str]:
    """--flag -> its help text, from argparse's listing."""
    blocks = re.split(r"\n  (?=--)", text.split("options:")[1])
    return {b.split()[0].rstrip(","): " ".join(b.split()) for b in blocks if b.startswith("--")}


def test_train_help_gives_every_option_a_help_line_with_its_default(capsys):
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0
    helps = _option_help(out)
    for f in dataclasses.fields(Plan):
        if f.name in cli_parts.NOT_OPTIONS:
            continue
        flag = "--" + f.name.replace("_", "-")
        assert flag in helps, flag
        assert "(default:" in helps[flag] and len(helps[flag]) > len(flag) + 25, helps[flag]
    assert "(default: 0.1)" in helps["--cut-frac"] and "fraction of steps spent warming up" in helps["--cut-frac"]
    assert "(default: digits)" in helps["--dataset"]


def test_train_help_says_how_to_train_on_your_own_zip(capsys):
    _, out, _ = _run(capsys, "train", "--help")
    assert "--dataset folder --dataset-path" in " ".join(out.split())
    assert ".zip" in _option_help(out)["--dataset"]


def test_each_plan_field_is_explained_in_exactly_one_place():
    comments = cli_parts._field_comments()
    assert "cut_frac" in comments and "seed" not in comments   # read from plan.py's field comments
    for f in dataclasses.fields(Plan):
        if f.name == "image_size":
            continue   # its help depends on the device and is written beside its option
        assert (f.name in comments) != (f.name in cli_parts._HELP), f.name


def test_runs_prints_when_each_run_was_created_in_local_time(capsys):
    store = RunStore()
    store.create(Plan(), owner="cli")
    created = store.list()[0].created
    code, out, _ = _run(capsys, "runs")
    assert code == 0
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) in out
    assert str(int(created)) not in out


def test_a_missing_dataset_path_is_one_line_naming_it_and_records_no_run(capsys, tmp_path):
    missing = tmp_path / "holiday.zip"
    code, out, err = _run(capsys, "train", "--dataset", "folder", "--dataset-path", str(missing))
    assert (code, out) == (2, "")
    assert err == f"error: {missing} does not exist\n"
    assert RunStore().list() == []


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_bad_input_not_an_internal_error(capsys, seed):
    code, _, err = _run(capsys, "train", "--seed", seed)
    assert code == 2 and err.startswith("error: seed: must be a whole number from 0 to 4,294,967,295")


def test_the_hosts_limits_hold_on_the_command_line(capsys, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_EPOCHS", "2")
    code, _, err = _run(capsys, "train", "--epochs", "3")
    assert code == 2 and err == "error: epochs: this server allows at most 2 epochs per run\n"
    monkeypatch.setenv("TLCORE_MAX_RUN_MEMORY_GB", "4")
    code, _, err = _run(capsys, "train", "--epochs", "1", "--strategy", "fine_tune_all", "--batch-size", "256",
                        "--image-size", "224", "--device", "cpu")
    assert code == 2 and err.startswith("error: batch_size: this run would need about")
    assert "this server allows 4.0 GB per run: lower the batch size to" in err
    assert RunStore().list() == []


def test_a_bad_setting_stops_any_command_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_CONCURRENT", "0")
    code, _, err = _run(capsys, "runs")
    assert code == 2 and err.startswith("error: TLCORE_MAX_CONCURRENT='0' is not valid") and err.count("\n") == 1


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def test_skipped_and_ignored_files_are_reported_on_the_command_line(capsys, tmp_path):
    path = tmp_path / "pets.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(5):
            zf.writestr(f"cats/{i}.png", _png((200, 30, 30)))
            zf.writestr(f"dogs/{i}.png", _png((30, 30, 200)))
        zf.writestr("cats/broken.png", b"\x89PNG cut short")
        zf.writestr("notes.txt", b"hello")
    code, out, err = _run(capsys, "train", "--dataset", "folder", "--dataset-path", str(path), "--dataset-name",
                          "my pets.zip", "--strategy", "pixel_svm", "--epochs", "1", "--image-size", "32")
    assert code == 0, err
    note = next(line for line in err.splitlines() if line.startswith("note: "))
    assert note.startswith("note: while reading my pets.zip: ")
    assert "1 skipped unreadable" in note and "1 ignored non images" in note
    assert json.loads(out.strip().splitlines()[-1])["notes"] == {"skipped_unreadable": 1, "ignored_non_images": 1}
