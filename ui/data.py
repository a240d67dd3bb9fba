"""Where uploads and webcam shots go (a per-browser folder under the cache), and dataset loading."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import MutableMapping

from tlcore import downloads
from tlcore.data import ImageSplits, load_folder, load_plan_data
from tlcore.paths import cache_dir
from tlcore.train.plan import Plan


def uploads_root() -> Path:
    """Every upload and webcam shot lives under here; a shared link may point only inside it."""
    return cache_dir() / "uploads"


def _session_dir(owner: str) -> Path:
    return uploads_root() / re.sub(r"[^A-Za-z0-9_-]", "_", owner)


def save_upload(data: bytes, filename: str, owner: str) -> Path:
    """Store an uploaded zip under a content-addressed name, after the engine has accepted it.

    The archive is validated (and fully decoded) before it is kept, so a bad upload leaves nothing.
    """
    folder = _session_dir(owner)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    final = folder / f"{digest}.zip"
    if final.exists():
        return final
    tmp = folder / f".{digest}.part"
    tmp.write_bytes(data)
    try:
        load_folder(tmp, image_size=32)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.rename(final)
    return final


def webcam_dir(owner: str) -> Path:
    return _session_dir(owner) / "webcam"


def save_shot(jpeg: bytes, class_name: str, owner: str) -> int:
    safe = re.sub(r"[^A-Za-z0-9 _-]", "_", class_name).strip() or "class"
    folder = webcam_dir(owner) / safe
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("*.jpg")))
    (folder / f"shot_{n:04d}.jpg").write_bytes(jpeg)
    return n + 1


def save_new_shot(jpeg: bytes, class_name: str, owner: str, memory: MutableMapping) -> int | None:
    """Save a webcam photo once. `st.camera_input` keeps returning the same photo on every rerun, so
    the hash of the last saved photo is kept in `memory` (session state): the same photo again, even
    under a new class name, is not saved twice. Returns the class's shot count, or None if skipped."""
    digest = hashlib.sha256(jpeg).hexdigest()
    if memory.get("webcam_last_shot") == digest:
        return None
    n = save_shot(jpeg, class_name, owner)
    memory["webcam_last_shot"] = digest
    return n


def webcam_counts(owner: str) -> dict[str, int]:
    root = webcam_dir(owner)
    if not root.is_dir():
        return {}
    return {d.name: len(list(d.glob("*.jpg"))) for d in sorted(root.iterdir()) if d.is_dir()}


def load(plan: Plan, progress: downloads.Progress | None = None) -> ImageSplits:
    """The plan's dataset; a first use downloads it, reporting its bytes to `progress`."""
    return load_plan_data(plan, progress)
