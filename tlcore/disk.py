"""A write that fails for lack of space: recognised wherever it surfaces (a file the run saves, the
SQLite store under TLCORE_HOME, a PostgreSQL server's disk) and told in one line that says how much
room is left and where, so a run ends as failed for that reason instead of an 'internal error' or,
when the store itself is full, 'interrupted' long after."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_TEXT = ("database or disk is full", "no space left on device", "could not extend file", "disk full",
              "sqlite_full")


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        for inner in (getattr(exc, "cause", None), getattr(exc, "orig", None)):   # StoreDown, SQLAlchemy
            if isinstance(inner, BaseException):
                yield from _chain(inner)
        exc = exc.__cause__ or exc.__context__


def full_error(exc: BaseException | None) -> BaseException | None:
    """The error in `exc`'s chain that says a disk is full, or None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return e
        if getattr(e, "sqlstate", None) == "53100" or any(t in str(e).lower() for t in _FULL_TEXT):
            return e
    return None


def is_disk_full(exc: BaseException | None) -> bool:
    return full_error(exc) is not None


def free_mb(folder: Path) -> float | None:
    for p in (folder, *folder.parents):
        try:
            return shutil.disk_usage(p).free / 2**20
        except OSError:
            continue
    return None


def disk_full_message(exc: BaseException, folder: Path | str | None) -> str:
    """The one line a run ends with: the folder that is full and the room left in it."""
    e = full_error(exc) or exc
    where = Path(e.filename).parent if isinstance(e, OSError) and e.filename else (Path(folder) if folder else None)
    if where is None:
        return ("no space left on the disk of the run store's database server: the run was ended as failed; "
                "free some space there and run it again")
    free = free_mb(where)
    room = f"{free:,.0f} MB free" if free is not None else "no room left"
    return (f"no space left on the disk: {room} in {where}; the run was ended as failed and nothing half-written "
            "was kept: free some space and run it again")
