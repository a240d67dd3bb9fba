"""Where tlcore keeps downloads, caches and runs. Every location can be moved by an environment variable."""
from __future__ import annotations

import os
from pathlib import Path


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))


def data_dir() -> Path:
    """Root for downloaded datasets (torchvision layout). `TLCORE_DATA_DIR` overrides."""
    return Path(os.environ.get("TLCORE_DATA_DIR", _cache_home() / "tlcore" / "data"))


def cache_dir() -> Path:
    """Decoded-image and feature caches. `TLCORE_CACHE_DIR` overrides."""
    return Path(os.environ.get("TLCORE_CACHE_DIR", _cache_home() / "tlcore" / "cache"))


def home_dir() -> Path:
    """Run store (SQLite + artifacts). `TLCORE_HOME` overrides."""
    return Path(os.environ.get("TLCORE_HOME", _cache_home() / "tlcore" / "home"))
