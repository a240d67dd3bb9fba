"""What watching a run costs the server: CPU seconds per second and memory of `streamlit run app.py`
while N Chromium tabs follow an active run on the Train page, with `runner.postScriptGC` on and off.

The run is a stand-in written by this script (a Step event every 0.25 s into the run store), so the
figures are the UI's own cost per watching tab, not training. Needs /usr/bin/chromium and playwright.

    python benchmarks/watch_cost.py --tabs 3 --seconds 30
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def _fake_run(home: Path, stop: threading.Event) -> str:
    """A run that stays 'running' (this process is alive) and reports a step four times a second."""
    os.environ["TLCORE_HOME"] = str(home)
    from tlcore.runs import RunStore
    from tlcore.train.events import RunStarted, Step
    from tlcore.train.plan import Plan

    from tlcore.jobs.worker import Heartbeat
    store, plan = RunStore(home), Plan(image_size=32, epochs=100)
    run_id = store.create(plan, owner="bench")
    beat = Heartbeat(store, run_id)   # held for the script's life: the server's sweep must not end it
    beat.__enter__()
    store.append(run_id, RunStarted(plan.to_dict(), "cpu", 10, 10, ("a", "b"), 6400, 1600, ("x", "y"),
                                    steps_per_epoch=100))

    def steps() -> None:
        i = 0
        while not stop.is_set():
            store.append(run_id, Step(i // 100, i, 10_000, 100, 1.0, (0.0, 0.0, 1e-3), 100.0, elapsed=i * 0.25))
            i += 1
            time.sleep(0.25)
    threading.Thread(target=steps, daemon=True).start()
    return run_id


def measure(post_gc: bool, tabs: int, seconds: float, tmp: Path, run_id: str) -> dict:
    from playwright.sync_api import expect, sync_playwright

    port = _port()
    env = {**os.environ, "TLCORE_HOME": str(tmp / "home"), "TLCORE_CACHE_DIR": str(tmp / "cache"),
           "TLCORE_DATA_DIR": str(tmp / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--runner.postScriptGC", str(post_gc).lower()], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"])
            pages = [browser.new_page() for _ in range(tabs)]
            for page in pages:
                page.goto(f"{url}/train?run={run_id}")
                expect(page.get_by_text("Run feature_extractor").first).to_be_visible(timeout=180_000)
            time.sleep(5)   # every tab polling
            c0, t0, rss0 = _cpu_seconds(proc.pid), time.monotonic(), _rss_mb(proc.pid)
            time.sleep(seconds)
            cpu = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
            rss = _rss_mb(proc.pid)
            browser.close()
        return {"postScriptGC": post_gc, "tabs": tabs, "server_cpu_s_per_s": round(cpu, 3),
                "per_tab": round(cpu / tabs, 3), "rss_mb_start": round(rss0), "rss_mb_end": round(rss)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp, stop = Path(d), threading.Event()
        run_id = _fake_run(tmp / "home", stop)
        try:
            for post_gc in (True, False):
                print(measure(post_gc, args.tabs, args.seconds, tmp, run_id), flush=True)
        finally:
            stop.set()


if __name__ == "__main__":
    main()
