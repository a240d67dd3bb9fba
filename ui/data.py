"""Uploads and webcam shots (private to each browser, see tlcore.uploads), and dataset loading."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import MutableMapping

from tlcore import downloads, uploads
from tlcore.data import DATASETS, ImageSplits, load_plan_data, validate_archive
from tlcore.errors import DatasetError
from tlcore.train.plan import Plan


def uploads_root() -> Path:
    """Every upload and webcam shot lives under here."""
    return uploads.root_dir()


def check_archive(path: Path) -> None:
    """Refuse a bad archive before it is kept: its structure, class folders and image headers are
    checked without decoding any image (the one full decode happens when a run or a preview needs it).
    The file is named as the learner's upload, so the engine's message names their file."""
    validate_archive(path, display_name=path.name)


def save_upload(data: bytes, filename: str, owner: str) -> uploads.Upload:
    """Keep an uploaded zip (after the engine accepted it) as one of this browser's datasets."""
    ref = uploads.save(owner, filename, data, check=check_archive)
    return uploads.resolve(ref, owner)


def webcam_dir(owner: str) -> Path:
    return uploads.webcam_dir(owner)


def save_shot(jpeg: bytes, class_name: str, owner: str) -> int:
    return uploads.save_shot(owner, class_name, jpeg)


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
    return uploads.webcam_counts(owner)


def dataset_title(plan: Plan) -> str:
    """What people call the plan's dataset: an upload's file name, or the registry's title."""
    if plan.dataset == "folder":
        return plan.dataset_name or "your images"
    return DATASETS[plan.dataset].title if plan.dataset in DATASETS else plan.dataset


def dataset_short(plan: Plan) -> str:
    """The dataset in a run's name: the registry key, or the upload's own name."""
    return (plan.dataset_name or "your images") if plan.dataset == "folder" else plan.dataset


def load(plan: Plan, progress: downloads.Progress | None = None) -> ImageSplits:
    """The plan's dataset; a first use downloads it, reporting its bytes to `progress`.

    An upload's errors name the upload, never the folder it is kept in on the server."""
    try:
        return load_plan_data(plan, progress)
    except DatasetError as e:
        if plan.dataset_path and plan.dataset_path in str(e):
            raise DatasetError(str(e).replace(plan.dataset_path, dataset_title(plan))) from None
        raise
