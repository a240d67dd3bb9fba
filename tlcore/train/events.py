"""What a run tells the world, as it happens. One list of small frozen dataclasses.

Events carry plain numbers and strings (never tensors) so a sink can be `list.append`, the run
store, or a JSON line. Every run ends with exactly one `RunEnded`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union


@dataclass(frozen=True, slots=True)
class RunStarted:
    plan: dict[str, Any]           # Plan.to_dict()
    device: str                    # "cuda:0 (NVIDIA H100)", "cpu (2 threads)", ...
    trainable_params: int
    frozen_params: int
    groups: tuple[str, ...]        # layer group names, bottom -> top ("" for pixel_svm)
    train_size: int
    val_size: int
    classes: tuple[str, ...]
    dataset_name: str = ""         # what people call the data: an upload's file name, or the registry title
    cuts: tuple[int, ...] = ()     # lowest trainable group per epoch (len(groups): head only); () without a network
    steps_per_epoch: int = 0
    group_mflops: tuple[float, ...] = ()   # forward MFLOPs per image of each layer group at the run's image size


@dataclass(frozen=True, slots=True)
class Phase:
    """Work that is not a training step (decoding, feature extraction, SVM fit), with progress."""
    name: str                      # "features", "svm", ...
    done: int
    total: int
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    epoch: int                     # 0-based
    step: int                      # global, 0-based
    total_steps: int
    steps_per_epoch: int
    loss: float
    lrs: tuple[float, ...]         # learning rate per layer group in the optimiser, bottom -> top, head last
    images_per_s: float            # training images per second of stepping in this epoch (feature passes excluded)
    elapsed: float = 0.0           # seconds since the run started


@dataclass(frozen=True, slots=True)
class Unfrozen:
    epoch: int                     # the epoch that first trains this group
    group: str


@dataclass(frozen=True, slots=True)
class EpochEnded:
    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    confusion: tuple[tuple[int, ...], ...]   # rows: true class, columns: predicted class
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    macro_f1: float
    trainable_groups: tuple[str, ...]
    seconds: float                 # wall time of this epoch, its feature pass and evaluation included
    images_per_s: float            # training images per second of stepping (feature pass excluded)
    feature_cache_hit: bool = False
    feature_seconds: float = 0.0   # the frozen groups' feature pass this epoch (0: none, or from the cache)
    feature_images_per_s: float = 0.0   # backbone images/s of that pass (0 when there was none)
    steps_per_s: float = 0.0       # optimiser steps per second


# Result schemas: a lab declares the fields of each kind of result row it reports, so a row is
# checked when it is made (a typo or a tensor never reaches the store) and any page can tabulate it.
RESULT_SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {}
_NUMBER = (int, float)


def register_schema(name: str, fields: dict[str, type | tuple[type, ...]]) -> str:
    """Declare a result schema: field name -> type (float also admits int; None is never allowed)."""
    if name in RESULT_SCHEMAS and RESULT_SCHEMAS[name] != fields:
        raise ValueError(f"result schema {name!r} is already registered with other fields")
    RESULT_SCHEMAS[name] = fields
    return name


def _admits(kind: type | tuple[type, ...], value: Any) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        kinds = (*kinds, int)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


@dataclass(frozen=True, slots=True)
class LabResult:
    """One row of a lab's results (a probe's group, one arm of a comparison, ...), in a declared schema."""
    schema: str
    values: dict[str, Any]

    def __post_init__(self) -> None:
        fields = RESULT_SCHEMAS.get(self.schema)
        if fields is None:
            raise ValueError(f"unknown result schema {self.schema!r}")
        if set(self.values) != set(fields):
            missing, extra = sorted(set(fields) - set(self.values)), sorted(set(self.values) - set(fields))
            raise ValueError(f"{self.schema} result: missing {missing}, unexpected {extra}")
        for name, kind in fields.items():
            if not _admits(kind, self.values[name]):
                raise ValueError(f"{self.schema} result: {name} must be {kind}, not {self.values[name]!r}")


    @classmethod
    def stored(cls, schema: str, values: dict[str, Any]) -> "LabResult":
        """A row read back from the store: it was checked when its lab made it, and the process reading
        it (a page, the CLI) need not have imported that lab."""
        row = object.__new__(cls)
        object.__setattr__(row, "schema", schema)
        object.__setattr__(row, "values", values)
        return row


@dataclass(frozen=True, slots=True)
class Metrics:
    """A run's headline numbers ("val_acc", "target_acc", ...), what Compare tabulates for any kind."""
    values: dict[str, float]

    def __post_init__(self) -> None:
        for name, v in self.values.items():
            if not isinstance(name, str) or not _admits(float, v):
                raise ValueError(f"metric {name!r} must be a number, not {v!r}")


@dataclass(frozen=True, slots=True)
class RunEnded:
    status: Literal["finished", "stopped", "failed"]
    message: str = ""
    seconds: float = 0.0


Event = Union[RunStarted, Phase, Step, Unfrozen, EpochEnded, LabResult, Metrics, RunEnded]
Emit = Callable[[Event], None]
EVENT_TYPES: dict[str, type] = {t.__name__: t for t in (RunStarted, Phase, Step, Unfrozen, EpochEnded, LabResult,
                                                         Metrics, RunEnded)}


def to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready dict with a `type` key."""
    d = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return {"type": type(event).__name__, **d}


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def from_dict(d: dict[str, Any]) -> Event:
    """Inverse of `to_dict` (JSON turns tuples into lists; they come back as tuples)."""
    cls = EVENT_TYPES[d["type"]]
    if cls is LabResult:
        return LabResult.stored(d["schema"], d["values"])
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            kwargs[f.name] = v if f.name in ("plan", "values") else _tuplify(v)
    return cls(**kwargs)
