"""The strategy guide's similarity probe as a run of its own kind, so it goes through the job queue
and the host's limits like every run instead of computing in a page's thread. The sample's CNN codes
go to the engine's feature cache: a class estimating the same data and seed computes them once."""
from __future__ import annotations

from ..advisor import estimate_similarity
from ..kinds import Kind, register_kind
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import prepare, started
from ..train.scope import RunScope

SCHEMA = register_schema("similarity", {"cnn_accuracy": float, "pixel_accuracy": float, "samples": int,
                                        "verdict": str})


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        emit(started(prepared, None))
        emit(Phase("probe", 0, 1))
        est = estimate_similarity(prepared.data, seed=plan.seed, cache=default_cache())
        emit(Phase("probe", 1, 1))
        emit(LabResult(SCHEMA, {"cnn_accuracy": est.cnn_accuracy, "pixel_accuracy": est.pixel_accuracy,
                                "samples": est.samples, "verdict": est.verdict}))
        emit(Metrics({"cnn_accuracy": est.cnn_accuracy, "pixel_accuracy": est.pixel_accuracy}))


register_kind(Kind("similarity", "Similarity probe", run, results=(SCHEMA,), unit="estimate",
                   epochs=None))   # probes fit once: no epochs to limit
