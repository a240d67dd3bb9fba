"""Every TLCORE_* environment variable in one table: type, bounds, default and meaning.

`read(name)` is how tlcore reads one. A bad value fails with one line that names the setting, the
value and what is allowed, so a host who typed `TLCORE_MAX_CONCURRENT=0` learns it at start, not
when the first run waits forever. `check_all()` reads every one that is set: the CLI and the app
call it once at start. An empty value counts as unset.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import TLCoreError

Kind = Literal["path", "int", "float", "bool", "text"]


class SettingError(TLCoreError, ValueError):
    """An environment setting with a value tlcore cannot use."""

    def __init__(self, name: str, value: str, allowed: str) -> None:
        self.name, self.value = name, value
        shown = f"(hidden, {len(value.strip())} characters)" if SETTINGS[name].secret else repr(value)
        super().__init__(f"{name}={shown} is not valid: {allowed} ({SETTINGS[name].meaning})")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    meaning: str                               # one line, for README and error messages
    default: Any = None                        # when unset; a callable computes it; None: no limit / off
    default_text: str = ""                     # how people see the default when it is computed
    low: float | None = None                   # bounds for int and float, inclusive
    high: float | None = None
    min_chars: int = 0                         # text: the shortest value accepted
    secret: bool = False                       # never shown: `settings` and error messages mask it

    def describe_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.default is None:
            return "no limit"
        if self.kind == "bool":
            return "on" if self.default else "off"
        return str(self.default)


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


HOST_SHARE = 0.5                # of the machine's memory, shared by the runs that train at once


# --- the host's budget --------------------------------------------------------------------------------
def _cgroup_limit() -> int | None:
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:   # "max" or a huge number: no limit
            return int(text)
    return None


def host_memory_bytes() -> int:
    """The machine's memory, or the container's limit when that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30   # no sysconf (Windows): assume a small machine
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def default_budget_bytes() -> int:
    """TLCORE_MAX_RUN_MEMORY_GB's default: half the machine, shared by the runs allowed at once."""
    return int(HOST_SHARE * host_memory_bytes() / read("TLCORE_MAX_CONCURRENT"))


def _host_budget_gb() -> float:
    return default_budget_bytes() / 2**30


_TABLE = (
    Setting("TLCORE_HOME", "path", "run store: runs.sqlite and an artifacts folder per run",
            lambda: cache_home() / "tlcore" / "home", "~/.cache/tlcore/home"),
    Setting("TLCORE_CACHE_DIR", "path", "decoded datasets, frozen-feature cache, uploads",
            lambda: cache_home() / "tlcore" / "cache", "~/.cache/tlcore/cache"),
    Setting("TLCORE_DATA_DIR", "path", "downloaded datasets, torchvision layout",
            lambda: cache_home() / "tlcore" / "data", "~/.cache/tlcore/data"),
    Setting("TLCORE_MAX_CONCURRENT", "int", "runs that train at once on each device; the rest wait in a queue",
            1, low=1, high=64),
    Setting("TLCORE_MAX_EPOCHS", "int", "most epochs one run may ask for", None, low=1, high=1000),
    Setting("TLCORE_MAX_TRAIN_IMAGES", "int", "most training images one run may use", None, low=2),
    Setting("TLCORE_MAX_RUN_MEMORY_GB", "float",
            "most memory one run may need on the host, in GB; plans estimated above it are refused",
            _host_budget_gb, "half the machine's memory, shared by TLCORE_MAX_CONCURRENT runs", low=0.1),
    Setting("TLCORE_FEATURE_CACHE_MB", "int", "memory the frozen-feature cache may keep per process, in MB",
            2048, low=0),
    Setting("TLCORE_CPU_THREADS", "int", "threads a run uses on a CPU", lambda: max(1, os.cpu_count() or 1),
            "every core", low=1, high=1024),
    Setting("TLCORE_CPU_BF16", "bool", "bf16 autocast on CPUs that do bf16 natively (AVX512-BF16 / AMX)", True),
    Setting("TLCORE_CPU_INT8", "bool", "int8 frozen features on CPUs without bf16, where calibration finds them "
            "close to fp32 (0: fp32 only)", True),
    Setting("TLCORE_WORKER_PREWARM", "bool", "start one worker process, and import the engine in it, when the "
            "server starts (0: at the first run)", True),
    Setting("TLCORE_MAX_QUEUED_PER_OWNER", "int", "runs one person may have waiting in the queue at once", 3,
            low=1, high=1000),
    Setting("TLCORE_STORE_URL", "text", "the run store's database: SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db",
            None, "SQLite in TLCORE_HOME"),
    Setting("TLCORE_ARTIFACTS_DIR", "path", "where runs keep their files (models, predictions); every worker must reach it",
            None, "TLCORE_HOME/artifacts"),
    Setting("TLCORE_HEARTBEAT_GRACE_S", "float", "seconds without a heartbeat after which an active run is ended as "
            "interrupted", 60.0, low=5, high=86400),
    Setting("TLCORE_TEACHER_KEY", "text", "the key that opens the teacher's view of the class (unset: no teacher's view)",
            None, "no teacher's view", min_chars=16, secret=True),
    Setting("TLCORE_RAY_ADDRESS", "text", "a Ray cluster to run on (host:port of its head); unset: worker processes here",
            None, "worker processes on this host"),
    Setting("TLCORE_RAY_GPU_FRACTION", "float", "the share of a GPU one run declares on Ray (below 1: runs share GPUs)",
            1.0, low=0.01, high=1),
)
SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bounds(s: Setting) -> str:
    if s.low is not None and s.high is not None:
        return f"from {s.low:g} to {s.high:g}"
    return f"at least {s.low:g}" if s.low is not None else f"at most {s.high:g}" if s.high is not None else "any"


def _parse(s: Setting, raw: str) -> Any:
    if s.kind == "path":
        return Path(raw).expanduser()
    if s.kind == "text":
        if len(raw.strip()) < s.min_chars:   # a short key falls to guessing: refuse it at start
            raise SettingError(s.name, raw, f"must be at least {s.min_chars} characters long")
        return raw
    if s.kind == "bool":
        if raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise SettingError(s.name, raw, "use 1 or 0")
    number: Callable[[str], float] = int if s.kind == "int" else float
    what = "a whole number" if s.kind == "int" else "a number"
    try:
        value = number(raw.strip())
    except ValueError:
        raise SettingError(s.name, raw, f"must be {what} {_bounds(s)}") from None
    if not math.isfinite(value) or (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
        raise SettingError(s.name, raw, f"must be {what} {_bounds(s)}")
    return value


def read(name: str) -> Any:
    """The setting's value from the environment, checked; its default when unset or empty."""
    s = SETTINGS[name]
    raw = os.environ.get(name, "")
    if raw.strip():
        return _parse(s, raw)
    return s.default() if callable(s.default) else s.default


def is_set(name: str) -> bool:
    """Whether the host set it (to anything not empty), rather than leaving it to its default."""
    SETTINGS[name]   # a KeyError for a name not in the table
    return bool(os.environ.get(name, "").strip())


@contextlib.contextmanager
def overridden(name: str, value: Any):
    """The setting at `value` (checked) inside the block, as it was after: for one run in a worker
    process, whose own reads then see it (e.g. TLCORE_CPU_THREADS through the device pick)."""
    raw = str(value)
    _parse(SETTINGS[name], raw)
    before = os.environ.get(name)
    os.environ[name] = raw
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def check_all() -> None:
    """Raise SettingError for the first TLCORE_* setting that is set to a value tlcore cannot use."""
    for name, s in SETTINGS.items():
        raw = os.environ.get(name, "")
        if raw.strip():
            _parse(s, raw)


def _shown(value: Any) -> str:
    if value is None:
        return "no limit"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def rows() -> list[dict[str, str]]:
    """The table as `python -m tlcore settings` shows it: each setting's value here and now (a secret
    one only as set or not: the table is for showing a colleague, and a terminal keeps its scrollback)."""
    def value(s: Setting) -> str:
        v = read(s.name)
        return ("set (hidden)" if v else s.describe_default()) if s.secret else _shown(v)
    return [{"setting": s.name, "value": value(s), "default": s.describe_default(), "meaning": s.meaning}
            for s in _TABLE]
