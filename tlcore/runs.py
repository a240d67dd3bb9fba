"""The persistent run store: SQLite (WAL, safe for many readers and one writer per run) plus an
artifacts folder per run. The UI reads runs from here, never from a job object."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotOwner, TLCoreError
from .paths import home_dir
from .train import events as ev
from .train.plan import Plan

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, owner TEXT NOT NULL DEFAULT '', label TEXT NOT NULL DEFAULT '',
    plan_json TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', ended REAL,
    val_acc REAL, macro_f1 REAL, seconds REAL, trainable_params INTEGER, epochs_done INTEGER NOT NULL DEFAULT 0,
    host TEXT, pid INTEGER, process TEXT);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY (run_id, seq));
"""
# Columns newer than the first stores: databases made before them gain them on open (NULL in old rows).
_ADDED_COLUMNS = (("host", "TEXT"), ("pid", "INTEGER"), ("process", "TEXT"))
ACTIVE = ("queued", "running")

# Which process owns a run, so a starting server fails only the runs of dead processes. `process` is
# random per process because a pid can come back: a server restarted in a container is pid 1 again.
_HOST = socket.gethostname()
_PROCESS = secrets.token_hex(8)


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
    def name(self) -> str:
        """What people call this run: its label, or strategy · model · dataset."""
        return self.label or f"{self.plan.strategy} · {self.plan.model} · {self.plan.dataset} ({self.id[-4:]})"


class RunStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else home_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "runs.sqlite"
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)
            _migrate(c)

    # One connection per thread: sqlite3 connections must not cross threads; WAL lets readers run
    # while a run writes, busy_timeout absorbs the brief writer lock.
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def artifact_dir(self, run_id: str) -> Path:
        return self.root / "artifacts" / run_id

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

    def create(self, plan: Plan, *, owner: str = "", label: str = "") -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        self._conn().execute("INSERT INTO runs (id, created, owner, label, plan_json, status, host, pid, process) "
                             "VALUES (?,?,?,?,?,?,?,?,?)", (run_id, time.time(), owner, label, plan.to_json(),
                                                            "queued", _HOST, os.getpid(), _PROCESS))
        d = self.artifact_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        (d / "plan.json").write_text(plan.to_json())
        return run_id

    def append(self, run_id: str, event: ev.Event) -> None:
        c = self._conn()
        data = ev.to_dict(event)
        with _transaction(c):
            seq = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE run_id=?", (run_id,)).fetchone()[0]
            c.execute("INSERT INTO events VALUES (?,?,?,?)", (run_id, seq, data["type"], json.dumps(data)))
            if isinstance(event, ev.RunStarted):
                c.execute("UPDATE runs SET status='running', trainable_params=? WHERE id=?",
                          (event.trainable_params, run_id))
            elif isinstance(event, ev.EpochEnded):
                c.execute("UPDATE runs SET val_acc=?, macro_f1=?, epochs_done=epochs_done+1 WHERE id=?",
                          (event.val_acc, event.macro_f1, run_id))
            elif isinstance(event, ev.Metrics) and "val_acc" in event.values:
                c.execute("UPDATE runs SET val_acc=? WHERE id=?", (event.values["val_acc"], run_id))
            elif isinstance(event, ev.RunEnded):
                c.execute("UPDATE runs SET status=?, message=?, ended=?, seconds=? WHERE id=?",
                          (event.status, event.message, time.time(), event.seconds, run_id))

    def _row(self, run_id: str) -> sqlite3.Row:
        c = self._conn()
        c.row_factory = sqlite3.Row
        row = c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return row

    def status(self, run_id: str) -> str:
        return self._row(run_id)["status"]

    def load(self, run_id: str, *, with_steps: bool = True) -> Run:
        row = self._row(run_id)
        q = "SELECT json FROM events WHERE run_id=? " + ("" if with_steps else "AND type != 'Step' ") + "ORDER BY seq"
        events = tuple(ev.from_dict(json.loads(j)) for (j,) in self._conn().execute(q, (run_id,)))
        return Run(row["id"], row["created"], row["owner"], row["label"], Plan.from_json(row["plan_json"]),
                   row["status"], row["message"], events)

    def events_since(self, run_id: str, seq: int = -1) -> list[tuple[int, ev.Event]]:
        """(seq, event) for every event after `seq`, in order: a watching page keeps the last seq it
        saw and asks only for what is new, instead of reloading the whole run every second."""
        rows = self._conn().execute("SELECT seq, json FROM events WHERE run_id=? AND seq>? ORDER BY seq",
                                    (run_id, seq))
        return [(s, ev.from_dict(json.loads(j))) for s, j in rows]

    def check_owner(self, run_id: str, owner: str, action: str) -> None:
        """Raise NotOwner unless `owner` owns the run: a run id alone never lets anyone change a run."""
        if not owner or self._row(run_id)["owner"] != owner:
            raise NotOwner(run_id, action)

    def rename(self, run_id: str, label: str, *, owner: str) -> None:
        self.check_owner(run_id, owner, "rename")
        self._conn().execute("UPDATE runs SET label=? WHERE id=?", (label.strip()[:200], run_id))

    def list(self, owner: str | None = None, limit: int = 200) -> list[RunSummary]:
        c = self._conn()
        c.row_factory = sqlite3.Row
        where, args = ("WHERE owner=?", (owner,)) if owner is not None else ("", ())
        rows = c.execute(f"SELECT * FROM runs {where} ORDER BY created DESC, id DESC LIMIT ?", (*args, limit))
        out = []
        for r in rows:
            plan = json.loads(r["plan_json"])
            out.append(RunSummary(r["id"], r["created"], r["owner"], r["label"], plan["strategy"], plan["model"],
                                  plan["dataset"], r["status"], r["val_acc"], r["macro_f1"], r["seconds"],
                                  r["trainable_params"], r["message"]))
        return out

    def delete(self, run_id: str, *, owner: str) -> None:
        self.check_owner(run_id, owner, "delete")
        c = self._conn()
        with _transaction(c):
            c.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM runs WHERE id=?", (run_id,))
        shutil.rmtree(self.artifact_dir(run_id), ignore_errors=True)

    def compare(self, ids: list[str]) -> list[dict]:
        rows = []
        for run_id in ids:
            r = self.load(run_id, with_steps=False)
            last, started = r.last_epoch, r.started
            rows.append({"run": r.name, "id": r.id, "strategy": r.plan.strategy, "model": r.plan.model,
                         "dataset": r.plan.dataset, "status": r.status,
                         "val_acc": last.val_acc if last else None, "macro_f1": last.macro_f1 if last else None,
                         "trainable_params": started.trainable_params if started else None,
                         "seconds": r.ended.seconds if r.ended else None})
        return rows

    def mark_interrupted(self) -> int:
        """Runs a dead process left queued or running can never end: say so instead of spinning forever.
        Runs of live processes (a CLI run, another server on this store) and of other hosts go on."""
        msg = "interrupted: the server restarted before this run finished"
        rows = self._conn().execute("SELECT id, host, pid, process FROM runs WHERE status IN ('queued', 'running')")
        ids = [run_id for run_id, host, pid, process in rows.fetchall() if not _owner_alive(host, pid, process)]
        for run_id in ids:
            self.append(run_id, ev.RunEnded("failed", msg))
        return len(ids)


def _migrate(c: sqlite3.Connection) -> None:
    def missing() -> list[tuple[str, str]]:
        have = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
        return [col for col in _ADDED_COLUMNS if col[0] not in have]

    if missing():
        with _transaction(c):  # look again under the write lock: another process may be migrating too
            for name, kind in missing():
                c.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")


def _owner_alive(host: str | None, pid: int | None, process: str | None) -> bool:
    if pid is None:       # a run from before owners were recorded: its process is long gone
        return False
    if host != _HOST:     # another machine's processes cannot be seen from here; its own server judges
        return True
    if pid == os.getpid():
        return process == _PROCESS
    if os.name == "nt" or pid <= 0:  # Windows has no signal 0 (os.kill would end the process)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


class _transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
