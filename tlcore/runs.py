"""The persistent run store: runs and their events in a database (SQLite under TLCORE_HOME by
default, PostgreSQL when TLCORE_STORE_URL names one), artifacts in a folder per run that every worker
can reach (TLCORE_ARTIFACTS_DIR). The UI reads runs from here, never from a job object.

Liveness: whoever holds an active run renews its heartbeat on the database's clock (the server
while it waits in a queue, the worker while it trains); `sweep()` ends the runs whose heartbeat is
older than a grace period as interrupted, with one UPDATE, so two servers sweeping at once end each
run once. An ended run takes no more events: it has exactly one RunEnded.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from .errors import NotOwner, TLCoreError
from .paths import home_dir
from .store import db_now, open_database
from .store.schema import events as events_t, runs as runs_t
from .train import events as ev
from .train.plan import Plan

ACTIVE = ("queued", "running")
HEARTBEAT_S = 2.0              # how often a holder renews a run's heartbeat

# Which process created a run: shown to people and kept for diagnosis (liveness is the heartbeat's job).
_HOST = socket.gethostname()
_PROCESS = secrets.token_hex(8)
INTERRUPTED = "interrupted: the process running it stopped (killed, crashed or restarted) before it finished"


def grace_seconds() -> float:
    from . import settings
    return settings.read("TLCORE_HEARTBEAT_GRACE_S")
class RunNotFound(TLCoreError, KeyError):
    def __str__(self) -> str:
        return f"no run with id {self.args[0]!r}"


@dataclass(frozen=True)
class RunSummary:
    id: str
    created: float
    owner: str
    label: str
    strategy: str
    model: str
    dataset: str
    status: str
    val_acc: float | None
    macro_f1: float | None
    seconds: float | None
    trainable_params: int | None
    message: str = ""
    kind: str = "train"
    dataset_name: str = ""
    lesson: str = ""
    plan_json: str = ""       # the plan as stored: what a page compares a plan with, without loading the run


@dataclass(frozen=True)
class Run:
    id: str
    created: float
    owner: str
    label: str
    plan: Plan
    status: str
    message: str
    events: tuple[Any, ...] = field(repr=False)

    def _of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def started(self) -> ev.RunStarted | None:
        s = self._of(ev.RunStarted)
        return s[0] if s else None

    @property
    def epochs(self) -> list[ev.EpochEnded]:
        return self._of(ev.EpochEnded)

    @property
    def steps(self) -> list[ev.Step]:
        return self._of(ev.Step)

    @property
    def unfrozen(self) -> list[ev.Unfrozen]:
        return self._of(ev.Unfrozen)

    @property
    def phases(self) -> list[ev.Phase]:
        return self._of(ev.Phase)

    @property
    def results(self) -> list[ev.LabResult]:
        """A lab's result rows, in the order it reported them."""
        return self._of(ev.LabResult)

    @property
    def metrics(self) -> dict[str, float]:
        """The run's headline numbers: a lab's Metrics, or a training run's last epoch."""
        m = self._of(ev.Metrics)
        if m:
            return dict(m[-1].values)
        last = self.last_epoch
        return {"val_acc": last.val_acc, "macro_f1": last.macro_f1} if last else {}

    @property
    def ended(self) -> ev.RunEnded | None:
        e = self._of(ev.RunEnded)
        return e[-1] if e else None

    @property
    def last_epoch(self) -> ev.EpochEnded | None:
        e = self.epochs
        return e[-1] if e else None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def dataset_title(self) -> str:
        """What people call the run's data: the name it started with, an upload's name, or the registry key."""
        s = self.started
        return (s.dataset_name if s is not None and s.dataset_name else "") or self.plan.dataset_name or self.plan.dataset

    @property
    def name(self) -> str:
        """What people call this run: its label, or strategy · model · dataset."""
        return self.label or f"{self.plan.strategy} · {self.plan.model} · {self.dataset_title} ({self.id[-4:]})"


class RunStore:
    def __init__(self, root: Path | str | None = None, *, url: str | None = None) -> None:
        self.root = Path(root) if root is not None else home_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        from . import settings
        self.url = url or settings.read("TLCORE_STORE_URL") or f"sqlite:///{self.root / 'runs.sqlite'}"
        self.db = open_database(self.url)
        artifacts = settings.read("TLCORE_ARTIFACTS_DIR")
        self.artifacts_root = Path(artifacts) if artifacts else self.root / "artifacts"

    def ping(self) -> None:
        """StoreDown unless the database answers now (a page waiting for it to come back asks this)."""
        from sqlalchemy import text
        with self.db.read() as c:
            c.execute(text("SELECT 1"))

    @property
    def spec(self) -> tuple[str, str]:
        """(root, url): what another process needs to open this same store."""
        return str(self.root), self.url

    def artifact_dir(self, run_id: str) -> Path:
        return self.artifacts_root / run_id
    # --- artifacts: pages ask the store, never open a run's files by name ---------------------------
    def artifact(self, run_id: str, name: str) -> Any | None:
        """A saved artifact (torch.load, tensors and plain values only), or None when the run has none."""
        path = self.artifact_dir(run_id) / name
        if not path.is_file():
            return None
        import torch
        return torch.load(path, map_location="cpu", weights_only=True)

    def predictions(self, run_id: str) -> dict | None:
        """{"pred", "confidence", "true"} over the validation images, or None."""
        return self.artifact(run_id, "predictions.pt")

    def model_file(self, run_id: str) -> Path | None:
        path = self.artifact_dir(run_id) / "model.pt"
        return path if path.is_file() else None

    def cell_images(self, run_id: str, true_class: int, pred_class: int, limit: int = 24, loader=None):
        """The validation images behind one confusion-matrix cell, most confident first, with their
        confidences; ImagesUnavailable (a plain sentence) when they cannot be shown."""
        from .artifacts import cell_images
        run = self.load(run_id, with_steps=False)
        return cell_images(run, self.predictions(run_id), true_class, pred_class, limit, loader)

    def create(self, plan: Plan, *, owner: str = "", label: str = "", lesson: str = "") -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        with self.db.write() as c:
            c.execute(insert(runs_t).values(
                id=run_id, created=time.time(), owner=owner, label=label[:200], kind=plan.kind, plan_json=plan.to_json(),
                status="queued", message="", host=_HOST, pid=os.getpid(), process=_PROCESS, heartbeat=db_now(),
                stop_requested=False, lesson=lesson[:100]))
        d = self.artifact_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        (d / "plan.json").write_text(plan.to_json())
        return run_id

    def append(self, run_id: str, event: ev.Event) -> bool:
        """Record an event; False (and nothing written) when the run has already ended, so a run has
        exactly one RunEnded even when a sweep and a late worker both try to end it."""
        data = ev.to_dict(event)
        with self.db.write() as c:
            self.db.lock_row(c, run_id)
            status = c.execute(select(runs_t.c.status).where(runs_t.c.id == run_id)).scalar()
            if status is None:
                raise RunNotFound(run_id)
            if status not in ACTIVE:
                return False
            seq = c.execute(select(func.coalesce(func.max(events_t.c.seq), -1) + 1)
                            .where(events_t.c.run_id == run_id)).scalar()
            c.execute(insert(events_t).values(run_id=run_id, seq=seq, type=data["type"], json=json.dumps(data)))
            changes = _row_changes(event)
            if changes:
                c.execute(update(runs_t).where(runs_t.c.id == run_id).values(**changes))
        return True

    def _row(self, run_id: str):
        with self.db.read() as c:
            row = c.execute(select(runs_t).where(runs_t.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(run_id)
        return row

    def status(self, run_id: str) -> str:
        return self._row(run_id)["status"]

    def load(self, run_id: str, *, with_steps: bool = True) -> Run:
        row = self._row(run_id)
        q = select(events_t.c.json).where(events_t.c.run_id == run_id)
        if not with_steps:
            q = q.where(events_t.c.type != "Step")
        with self.db.read() as c:
            events = tuple(ev.from_dict(json.loads(j)) for (j,) in c.execute(q.order_by(events_t.c.seq)))
        return Run(row["id"], row["created"], row["owner"], row["label"], _stored_plan(row["plan_json"]),
                   row["status"], row["message"], events)

    def events_since(self, run_id: str, seq: int = -1) -> list[tuple[int, ev.Event]]:
        """(seq, event) for every event after `seq`, in order: a watching page keeps the last seq it
        saw and asks only for what is new, instead of reloading the whole run every second."""
        q = (select(events_t.c.seq, events_t.c.json).where(and_(events_t.c.run_id == run_id, events_t.c.seq > seq))
             .order_by(events_t.c.seq))
        with self.db.read() as c:
            return [(s, ev.from_dict(json.loads(j))) for s, j in c.execute(q)]

    def check_owner(self, run_id: str, owner: str, action: str) -> None:
        """Raise NotOwner unless `owner` owns the run: a run id alone never lets anyone change a run."""
        if not owner or self._row(run_id)["owner"] != owner:
            raise NotOwner(run_id, action)

    def check_owner_or_teacher(self, run_id: str, owner: str, teacher_key: str | None, action: str) -> None:
        from .teacher import is_teacher
        if not is_teacher(teacher_key):
            self.check_owner(run_id, owner, action)

    def rename(self, run_id: str, label: str, *, owner: str) -> None:
        self.check_owner(run_id, owner, "rename")
        with self.db.write() as c:
            c.execute(update(runs_t).where(runs_t.c.id == run_id).values(label=label.strip()[:200]))

    def list(self, owner: str | None = None, limit: int = 200) -> list[RunSummary]:
        q = select(runs_t)
        if owner is not None:
            q = q.where(runs_t.c.owner == owner)
        q = q.order_by(runs_t.c.created.desc(), runs_t.c.id.desc()).limit(limit)
        with self.db.read() as c:
            rows = c.execute(q).mappings().all()
        out = []
        for r in rows:
            plan = json.loads(r["plan_json"])
            out.append(RunSummary(r["id"], r["created"], r["owner"], r["label"], plan.get("strategy", ""),
                                  plan.get("model", ""), plan.get("dataset", ""), r["status"], r["val_acc"],
                                  r["macro_f1"], r["seconds"], r["trainable_params"], r["message"],
                                  kind=r["kind"], dataset_name=plan.get("dataset_name", ""), lesson=r["lesson"],
                                  plan_json=r["plan_json"]))
        return out

    def delete(self, run_id: str, *, owner: str) -> None:
        self.check_owner(run_id, owner, "delete")
        with self.db.write() as c:
            c.execute(delete(events_t).where(events_t.c.run_id == run_id))
            c.execute(delete(runs_t).where(runs_t.c.id == run_id))
        shutil.rmtree(self.artifact_dir(run_id), ignore_errors=True)

    def compare(self, ids: list[str]) -> list[dict]:
        rows = []
        for run_id in ids:
            r = self.load(run_id, with_steps=False)
            last, started = r.last_epoch, r.started
            rows.append({"run": r.name, "id": r.id, "kind": r.plan.kind, "strategy": r.plan.strategy,
                         "model": r.plan.model, "dataset": r.dataset_title, "status": r.status,
                         "val_acc": last.val_acc if last else r.metrics.get("val_acc"),
                         "macro_f1": last.macro_f1 if last else None,
                         "trainable_params": started.trainable_params if started else None,
                         "seconds": r.ended.seconds if r.ended else None,
                         **{k: v for k, v in r.metrics.items() if k not in ("val_acc", "macro_f1")}})
        return rows

    # --- liveness and stopping ----------------------------------------------------------------------
    def heartbeat(self, run_ids: list[str] | tuple[str, ...], worker: str | None = None) -> None:
        """Renew the heartbeat of runs this process holds (on the database's clock)."""
        if not run_ids:
            return
        values = {"heartbeat": db_now(), **({"worker": worker} if worker else {})}
        with self.db.write() as c:
            c.execute(update(runs_t).where(and_(runs_t.c.id.in_(list(run_ids)), runs_t.c.status.in_(ACTIVE)))
                      .values(**values))

    def sweep(self, grace_s: float | None = None) -> list[str]:
        """End, as interrupted, every active run whose heartbeat is older than the grace period.
        One conditional UPDATE decides which runs end, so concurrent sweeps end each run once."""
        grace = grace_seconds() if grace_s is None else grace_s
        stale = and_(runs_t.c.status.in_(ACTIVE),
                     or_(runs_t.c.heartbeat.is_(None), runs_t.c.heartbeat < db_now() - grace))
        ended = []
        with self.db.write() as c:
            ids = [r for (r,) in c.execute(select(runs_t.c.id).where(stale))]
            for run_id in ids:
                hit = c.execute(update(runs_t).where(and_(runs_t.c.id == run_id, stale))
                                .values(status="failed", message=INTERRUPTED, ended=time.time())).rowcount
                if hit:
                    seq = c.execute(select(func.coalesce(func.max(events_t.c.seq), -1) + 1)
                                    .where(events_t.c.run_id == run_id)).scalar()
                    data = ev.to_dict(ev.RunEnded("failed", INTERRUPTED))
                    c.execute(insert(events_t).values(run_id=run_id, seq=seq, type="RunEnded", json=json.dumps(data)))
                    ended.append(run_id)
        return ended

    def request_stop(self, run_id: str, *, owner: str | None, teacher_key: str | None = None) -> None:
        """Ask whoever runs it to stop (the worker checks every step): its owner, or the teacher with
        the host's key. `owner=None` is for tlcore's own stops (shutdown), never for a page."""
        if owner is not None:
            self.check_owner_or_teacher(run_id, owner, teacher_key, "stop")
        with self.db.write() as c:
            c.execute(update(runs_t).where(runs_t.c.id == run_id).values(stop_requested=True))

    def stop_requested(self, run_id: str) -> bool:
        """True when a stop was asked for, or the run has ended under its worker (a sweep, a forced stop)."""
        row = self._row(run_id)
        return bool(row["stop_requested"]) or row["status"] not in ACTIVE

    def active_ids(self) -> list[str]:
        with self.db.read() as c:
            return [r for (r,) in c.execute(select(runs_t.c.id).where(runs_t.c.status.in_(ACTIVE)))]


def _stored_plan(text: str) -> Plan:
    """A stored run's plan. Runs recorded before plans refused a dataset path without the folder dataset
    kept one they never read (they trained on `dataset`): it is dropped, as it was then."""
    d = json.loads(text)
    if isinstance(d, dict) and d.get("dataset_path") and d.get("dataset") != "folder":
        d = {**d, "dataset_path": ""}
    return Plan.from_dict(d)


def _row_changes(event: ev.Event) -> dict:
    """What an event changes in the run's summary row."""
    if isinstance(event, ev.RunStarted):
        return {"status": "running", "trainable_params": event.trainable_params}
    if isinstance(event, ev.EpochEnded):
        return {"val_acc": event.val_acc, "macro_f1": event.macro_f1, "epochs_done": runs_t.c.epochs_done + 1}
    if isinstance(event, ev.Metrics) and "val_acc" in event.values:
        return {"val_acc": event.values["val_acc"]}
    if isinstance(event, ev.RunEnded):
        return {"status": event.status, "message": event.message, "ended": time.time(), "seconds": event.seconds}
    return {}
