"""Does watching a run slow it down? The same real training run timed with 0 and with N Chromium
tabs following it on the Train page (`/train?run=ID`), against one `streamlit run app.py` server.

The run executes in a worker process (tlcore.jobs, as on the dashboard) that shares the machine,
not an interpreter, with the server; the tabs poll it once a second. Target: time with 5
watching tabs / time with none <= 1.3. In a class the browsers run on the students' machines, not
on the server: here they share its cores, so Chromium runs at the lowest CPU priority and what the
ratio measures is the server's own cost of being watched.

The lowest priority takes two settings on Linux. Playwright starts Chromium in a session of its
own, and with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1, the default on
most distributions) CPU time is shared between sessions first and by nice value only inside one:
`nice -n 19` alone leaves the five renderers half the machine, and a run whose two OpenMP threads
meet at every layer then waits for whichever thread the renderers preempted. So the wrapper also
sets its session's autogroup to nice 19 (/proc/self/autogroup). On a 2-core Xeon, 2026-12-02:
ratio 1.04 this way, 7.41 with --nice-only.

    python benchmarks/viewers.py --watchers 0,5 --repeats 2
"""
from __future__ import annotations

from tlcore.labs import run_plan
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _server import CHROMIUM, CHROMIUM_ARGS, ROOT, cpu_model, cpu_seconds, dirs_env, streamlit_server

sys.path.insert(0, str(ROOT))

PLAN = {"dataset": "digits", "strategy": "fine_tune_top", "top_groups": 2, "image_size": 64, "epochs": 3,
        "batch_size": 32, "schedule": "constant"}


def timed_run(runner, plan, url: str, watchers: int, browser, server_pid: int) -> dict:
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    run_id = runner.submit(plan, owner="bench")
    pages = []
    for _ in range(watchers):
        page = browser.new_page()
        page.goto(f"{url}/train?run={run_id}")
        pages.append(page)
    status = runner.wait(run_id, 1800)
    run = runner.store.load(run_id)
    for page in pages:
        page.close()
    server = (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
    return {"watchers": watchers, "status": status, "seconds": round(run.ended.seconds, 2),
            "server_cpu_s_per_s": round(server, 3), "val_acc": run.last_epoch.val_acc if run.last_epoch else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watchers", default="0,5", help="watching tabs per measurement, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nice-only", action="store_true",
                    help="leave Chromium's session at its own autogroup (only `nice -n 19`): the set-up "
                         "this benchmark had before, to see what the autogroup setting changes")
    args = ap.parse_args()
    counts = [int(c) for c in args.watchers.split(",")]
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.update(dirs_env(tmp))
        niced = tmp / "chromium-nice"
        niced.write_text("#!/bin/sh\n"   # the session's autogroup first (see above), then the process
                         + ("" if args.nice_only else "echo 19 > /proc/self/autogroup 2>/dev/null\n")
                         + f'exec nice -n 19 {CHROMIUM} "$@"\n')
        niced.chmod(0o755)
        from tlcore.jobs import JobRunner
        from tlcore.runs import RunStore
        from tlcore.train.plan import Plan
        plan = Plan(**PLAN)
        runner = JobRunner(RunStore(), backend="process", max_queued_per_owner=100, train_fn=run_plan)
        rows = []
        with streamlit_server(tmp) as (url, server_pid), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(niced), args=CHROMIUM_ARGS)
            runner.wait(runner.submit(plan, owner="bench"), 1800)   # warm: worker started, features cached
            for _ in range(args.repeats):
                for w in counts:   # interleaved, so drift in the machine's load hits both alike
                    rows.append(timed_run(runner, plan, url, w, browser, server_pid))
                    print(json.dumps(rows[-1]), flush=True)
            browser.close()
        runner.shutdown()
    med = {w: statistics.median(r["seconds"] for r in rows if r["watchers"] == w) for w in counts}
    base = med[min(counts)]
    print(json.dumps({"benchmark": "viewers", "chromium": "nice 19 only" if args.nice_only else
                      "nice 19 and its session's autogroup at nice 19", "plan": PLAN, "median_seconds": med,
                      "ratios": {w: round(s / base, 3) for w, s in med.items()}, "cpu": cpu_model(),
                      "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
