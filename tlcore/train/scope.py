"""One exit path for every run: whatever ends it, what was done is saved and one RunEnded is emitted.

A run finishes, is stopped (at any moment: decoding, a feature pass, a step, an evaluation) or
fails. The phases do not handle any of that themselves: they raise `Stopped` (via `check_stop`)
or `Failed`, or a real error escapes them, and `RunScope.__exit__` (like fastai's after-fit, which
runs on cancel too) keeps what the run `keep()`-ed last, turns the cause into a status and a
message a student can act on, and emits the run's single RunEnded.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import TLCoreError
from .events import Emit, RunEnded


class Stopped(Exception):
    """A stop was requested; raised between two batches of whatever phase was running."""


class Failed(TLCoreError):
    """The run cannot go on, for a reason the message gives (e.g. the loss became NaN)."""


def check_stop(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise Stopped()


@dataclass
class Kept:
    """What a run has to show for itself so far. Saved on every exit, so a stop during epoch 2's
    feature pass still leaves epoch 1's predictions and model."""
    pred: torch.Tensor | None = None          # validation predictions (CPU)
    confidence: torch.Tensor | None = None
    true: torch.Tensor | None = None
    classes: tuple[str, ...] = ()
    model: dict[str, Any] | None = None       # {"kind": "network" | "head", "state_dict": {...}}
    extra: dict[str, Any] = field(default_factory=dict)   # more artifacts by file name (a lab's own)


def outcome(exc: BaseException | None) -> tuple[str, str]:
    """(status, message) for whatever ended the run."""
    if exc is None:
        return "finished", ""
    if isinstance(exc, Stopped):
        return "stopped", "stopped on request; the epochs already finished are kept"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped", "aborted from the keyboard"
    if isinstance(exc, TLCoreError):
        return "failed", str(exc)
    if is_allocator_failure(exc):
        return "failed", allocator_message(exc)
    return "failed", f"internal error: {type(exc).__name__}: {exc}"


class RunScope:
    """`with RunScope(plan, emit, artifact_dir) as scope:` around a run's phases."""

    def __init__(self, plan, emit: Emit, artifact_dir: Path | str | None) -> None:
        self.plan, self.emit = plan, emit
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else None
        self.t0 = time.perf_counter()
        self.kept = Kept()
        self.status = ""

    def keep(self, **values: Any) -> None:
        for k, v in values.items():
            setattr(self.kept, k, v)

    def __enter__(self) -> "RunScope":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from ..disk import disk_full_message, is_disk_full
        status, message = outcome(exc)
        if is_disk_full(exc):   # a write found no room (a file, the store): that is the reason, not a crash
            status, message = "failed", disk_full_message(exc, self.artifact_dir)
        if status == "failed" and message.startswith("internal error"):
            self._write("error.txt", "".join(traceback.format_exception(exc_type, exc, tb)))
        try:
            save(self.artifact_dir, self.plan, self.kept)
        except Exception as e:  # noqa: BLE001 - the run's own outcome still has to be told
            status, message = "failed", (disk_full_message(e, self.artifact_dir) if is_disk_full(e) else
                                         f"{message + '; ' if message else ''}saving its results failed: {e}")
        if status == "failed" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.status = status
        self.emit(RunEnded(status, message, time.perf_counter() - self.t0))
        # Exceptions are the run's outcome, told above; KeyboardInterrupt and SystemExit still propagate.
        return exc_type is None or issubclass(exc_type, Exception)

    def _write(self, name: str, text: str) -> None:
        if self.artifact_dir is not None:
            self.artifact_dir.mkdir(parents=True, exist_ok=True)
            _atomic(self.artifact_dir / name, lambda tmp: tmp.write_text(text))


def save(artifact_dir: Path | None, plan, kept: Kept) -> None:
    """Write what was kept: model.pt (with the plan and the class names), predictions.pt, classes.json."""
    if artifact_dir is None:
        return
    artifact_dir.mkdir(parents=True, exist_ok=True)
    if kept.model is not None:
        model = {**kept.model, "plan": plan.to_dict(), "classes": list(kept.classes)}
        _atomic(artifact_dir / "model.pt", lambda tmp: torch.save(model, tmp))
    if kept.pred is not None:
        pred = {"pred": kept.pred, "confidence": kept.confidence, "true": kept.true}
        _atomic(artifact_dir / "predictions.pt", lambda tmp: torch.save(pred, tmp))
    if kept.classes:
        _atomic(artifact_dir / "classes.json", lambda tmp: tmp.write_text(json.dumps(list(kept.classes))))
    for name, value in kept.extra.items():
        _atomic(artifact_dir / name, lambda tmp, v=value: torch.save(v, tmp))


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write beside `path`, then rename: a write cut short (a full disk) leaves the old file or none,
    never half a file that a page would read back as a result."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# --- when an allocator fails (the one message a learner sees for it) -------------------------------------------------------------------
_SIGNS = ("can't allocate memory", "out of memory", "cannot allocate memory", "alloc_failed")


def is_allocator_failure(exc: BaseException) -> bool:
    """Did a memory allocation fail (CPU, CUDA or MPS), as opposed to any other error?"""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _SIGNS)


def _where(exc: BaseException) -> str:
    text = str(exc)
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if (oom is not None and isinstance(exc, oom)) or "CUDA" in text or "CUBLAS" in text or "CUDNN" in text:
        return "the GPU"
    if "MPS" in text:
        return "the Apple GPU"
    return "the computer"


def allocator_message(exc: BaseException) -> str:
    """The one line a learner sees for any allocator failure."""
    return (f"{_where(exc)} ran out of memory for this run: lower the batch size or the image size, or choose a "
            "strategy that trains fewer layer groups (or wait until another run has finished)")
