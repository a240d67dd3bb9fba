"""Every test gets its own run store, caches and data root: nothing touches ~/.cache or the network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist (README's test command runs the suite on two workers) each worker is one core's
# worth of the machine: one thread each, so the workers share the cores instead of fighting over them.
# Set before anything imports torch, so its thread pool starts at that size.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TLCORE_CPU_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# A job runner in a test starts no spare worker process ahead of its first run (the server's default):
# the suite builds a fresh runner for most page tests, and each spare would import torch for nothing.
# tests/test_workers.py turns it on where it is what is tested.
os.environ.setdefault("TLCORE_WORKER_PREWARM", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs a page as `__main__` and leaves it there; a worker process started afterwards
    (spawn) re-runs whatever `__main__` names, and a page made from a function fails there."""
    import sys
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _fresh_services():
    """Each test is a new "server": the pages' run store and job runner are cached per process
    (st.cache_resource), and one opened under an earlier test's TLCORE_HOME would serve this test."""
    import sys
    if "streamlit" in sys.modules:
        sys.modules["streamlit"].cache_resource.clear()
    yield
    if "streamlit" in sys.modules:
        sys.modules["streamlit"].cache_resource.clear()


@pytest.fixture(autouse=True)
def _isolated_tlcore_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path_factory.mktemp("tlcore")
    monkeypatch.setenv("TLCORE_HOME", str(root / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(root / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


# --- real services: a throwaway PostgreSQL server and a local Ray, on loopback only ------------------
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402

# .ci/run sets this: there the services must run, so a missing one fails instead of skipping.
REQUIRE_SERVICES = os.environ.get("TLCORE_REQUIRE_SERVICES") == "1"


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required here (TLCORE_REQUIRE_SERVICES=1) but is not available")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else (Path(shutil.which("pg_ctl")).parent if shutil.which("pg_ctl") else None)


class Postgres:
    """One server for the session (initdb + pg_ctl in a temporary folder); a fresh database per test."""

    def __init__(self, root: Path) -> None:
        self.bin, self.root, self.port = _pg_bin(), root, free_port()
        self.data = root / "data"
        as_root = os.geteuid() == 0   # postgres refuses to run as root: run it as the postgres user
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(root, "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg
        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres():
    import tempfile
    if _pg_bin() is None:
        _missing("PostgreSQL (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg")
    # Not under pytest's temporary folders: they are private to root and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="tlcore-pg-"))
    server = Postgres(root)
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Run the same store test on the embedded default and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.sqlite'}"
    return request.getfixturevalue("postgres").new_database()


def ray_command() -> list[str] | None:
    """Ray's command line as this Python running ray's own script module, or None without ray.

    The module, not the `ray` script on PATH: pip puts that script beside this Python, which need
    not be on PATH (a venv not activated), and the tests then skipped with "pip install ray"."""
    import importlib.util
    import sys
    if importlib.util.find_spec("ray") is None:
        return None
    return [sys.executable, "-m", "ray.scripts.scripts"]


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """A real local Ray head node on 127.0.0.1 (`ray start --head`), stopped after the session."""
    ray_cli = ray_command()
    if ray_cli is None:
        _missing("Ray (pip install ray)")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([*ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180, env=env)
    yield f"127.0.0.1:{port}"
    subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


# --- the lessons suite: marked by folder, its table printed at the end ------------------------------
LESSONS = Path(__file__).resolve().parent / "lessons"
LESSON_TABLE = Path(__file__).resolve().parents[1] / "test-artifacts" / "lessons"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # Before `-m` selects: every test under tests/lessons/ is a lesson (the default run leaves them out).
    for item in items:
        if LESSONS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lessons)


def pytest_sessionstart(session):
    # Only a run of the lessons suite starts a fresh table: any other pytest run on the same checkout
    # (one test file, the quick suite) would otherwise wipe the rows of a lessons run still going.
    marks = session.config.getoption("markexpr", "") or ""
    lessons_run = "lessons" in marks and "not lessons" not in marks
    if lessons_run and not hasattr(session.config, "workerinput") and LESSON_TABLE.is_dir():
        for old in LESSON_TABLE.glob("*.json"):
            old.unlink()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import json
    rows = [json.loads(p.read_text()) for p in sorted(LESSON_TABLE.glob("*.json"))] if LESSON_TABLE.is_dir() else []
    if not rows or hasattr(config, "workerinput"):
        return
    head = "| lab | claim | default settings | figure | per seed | mean | spread | verdict | seconds | CPU |"
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        seeds = ", ".join(f"{k}: {v:+.3f}" if r["figure"].startswith(("gain", "gap")) else f"{k}: {v:.3f}"
                          for k, v in r["per_seed"].items())
        lines.append(f"| {r['lab']} | {r['claim']} | {r['settings']} | {r['figure']} | {seeds} | {r['mean']:.3f} | "
                     f"{r['spread']:.3f} | {r['verdict']} | {r['seconds']} | {r['cpu']} |")
    (LESSON_TABLE / "table.md").write_text("\n".join(lines) + "\n")
    terminalreporter.section("lessons")
    for line in lines:
        terminalreporter.write_line(line)
