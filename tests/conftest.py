"""Every test gets its own run store, caches and data root: nothing touches ~/.cache or the network."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_tlcore_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path_factory.mktemp("tlcore")
    monkeypatch.setenv("TLCORE_HOME", str(root / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(root / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
