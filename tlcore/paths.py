"""Where tlcore keeps downloads, caches and runs. Every location can be moved by an environment
variable (see tlcore.settings for the table)."""
from __future__ import annotations

from pathlib import Path

from .settings import read


def data_dir() -> Path:
    """Root for downloaded datasets (torchvision layout). `TLCORE_DATA_DIR` overrides."""
    return read("TLCORE_DATA_DIR")


def cache_dir() -> Path:
    """Decoded-image and feature caches. `TLCORE_CACHE_DIR` overrides."""
    return read("TLCORE_CACHE_DIR")


def home_dir() -> Path:
    """Run store (SQLite + artifacts). `TLCORE_HOME` overrides."""
    return read("TLCORE_HOME")
