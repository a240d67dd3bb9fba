"""Engines, transactions and the database clock for both backends."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Float

from ..errors import TLCoreError


class StoreUnavailable(TLCoreError):
    """The run store named by TLCORE_STORE_URL cannot be used (bad URL, server down, wrong password)."""


class db_now(FunctionElement):
    """Seconds since the epoch on the database server's clock: heartbeats from many hosts compare
    against one clock, so a worker with a wrong clock is not taken for dead (Optuna's RDB storage
    does the same)."""
    type = Float()
    inherit_cache = True


@compiles(db_now, "sqlite")
def _now_sqlite(element, compiler, **kw) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "postgresql")
def _now_postgres(element, compiler, **kw) -> str:
    return "EXTRACT(EPOCH FROM clock_timestamp())"


@dataclass
class Database:
    engine: Engine
    url: str

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction. SQLite takes its write lock up front (BEGIN IMMEDIATE), so two writers
        queue on the busy timeout instead of one failing when its read turns into a write."""
        with self.engine.connect() as conn:
            if not self.sqlite:
                with conn.begin():
                    yield conn
                return
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def lock_row(self, conn: Connection, run_id: str) -> None:
        """Serialise writers of one run (PostgreSQL; SQLite's write lock already covers the database)."""
        if not self.sqlite:
            conn.execute(text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": run_id})


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        # WAL: readers never wait for the writing run; the busy timeout absorbs the brief write lock.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
    return engine


_ENGINES: dict[str, Database] = {}
_LOCK = threading.Lock()


def open_database(url: str) -> Database:
    """One engine (and its connection pool) per URL per process, migrated to the current schema."""
    with _LOCK:
        if url in _ENGINES:
            return _ENGINES[url]
        try:
            if url.startswith("sqlite"):
                Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
                engine = _sqlite_engine(url)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            db = Database(engine, url)
            from .migrate import upgrade
            upgrade(db)
        except (ArgumentError, NoSuchModuleError, OperationalError, ValueError, ImportError) as e:
            raise StoreUnavailable(f"TLCORE_STORE_URL: cannot use the run store at {_redact(url)}: "
                                   f"{_first_line(e)}") from None
        _ENGINES[url] = db
        return db


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even parseable: say so without echoing it
        return "(an unparseable URL)"


def _first_line(e: BaseException) -> str:
    msg = str(getattr(e, "orig", None) or e).strip().splitlines()
    return msg[0] if msg else type(e).__name__
