"""Engines, transactions and the database clock for both backends."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (ArgumentError, DatabaseError, DBAPIError, IntegrityError, InterfaceError,
                            NoSuchModuleError, OperationalError, ProgrammingError)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Float

from ..errors import TLCoreError


class StoreUnavailable(TLCoreError):
    """The run store cannot be used at start (bad URL, server down, wrong password, a damaged file)."""


DOWN = "the run store is unavailable, retrying"


class StoreDown(StoreUnavailable):
    """The run store stopped answering after it opened (the database restarts, its disk fails). Its
    message is the plain line a page shows: no host, no port, no driver text; `cause` keeps that for
    the server's log. Transient: whoever writes retries (tlcore.jobs.worker.with_retry), pages retry."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(DOWN)


def _unavailable(e: BaseException) -> bool:
    """A database error that means the store is not there right now (down, unreachable, unreadable),
    as opposed to a mistake in a statement, which stays a bug and is raised as it is."""
    if isinstance(e, (OperationalError, InterfaceError)) or getattr(e, "connection_invalidated", False):
        return True
    return isinstance(e, DatabaseError) and not isinstance(e, (IntegrityError, ProgrammingError))


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except DBAPIError as e:
        if _unavailable(e):
            raise StoreDown(e) from e
        raise


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
        queue on the busy timeout instead of one failing when its read turns into a write.
        A store that stops answering raises StoreDown (one plain line), never the driver's error."""
        with _translated(), self.engine.connect() as conn:
            if not self.sqlite:
                with conn.begin():
                    yield conn
                return
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(DBAPIError):   # a store gone bad may not roll back: its error is the news
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with _translated(), self.engine.connect() as conn:
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
        file = Path(url.split("///", 1)[1]) if url.startswith("sqlite") and "///" in url else None
        try:
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                engine = _sqlite_engine(url)
                _check_sqlite(engine, file)
            else:
                # connect_timeout: a server that does not answer stops the start in seconds, not minutes
                args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=args)
            db = Database(engine, url)
            from .migrate import upgrade
            upgrade(db)
        except StoreUnavailable:
            raise
        except (ArgumentError, NoSuchModuleError, DatabaseError, StoreDown, ValueError, ImportError, TypeError) as e:
            if file is not None:
                raise StoreUnavailable(_damaged(file, e)) from None
            raise StoreUnavailable(f"TLCORE_STORE_URL: cannot use the run store at {_redact(url)}: "
                                   f"{_first_line(getattr(e, 'cause', e))}") from None
        _ENGINES[url] = db
        return db


def _check_sqlite(engine: Engine, file: Path) -> None:
    """SQLite's own quick_check before anything reads the file: a damaged or foreign file stops the
    start with one line, instead of a server that answers health checks and shows tracebacks."""
    if not file.exists() or file.stat().st_size == 0:
        return   # a new store
    with engine.connect() as conn:
        rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        raise StoreUnavailable(_damaged(file, rows[0] if rows else "no answer"))


def _damaged(file: Path, why: object) -> str:
    text = _first_line(why) if isinstance(why, BaseException) else str(why).splitlines()[0]
    return (f"TLCORE_HOME: the run store {file} is damaged or not a run store ({text}): move it aside "
            f"(mv {file} {file}.damaged, with its -wal and -shm files) to start with an empty store, or "
            "restore it from a backup")


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
