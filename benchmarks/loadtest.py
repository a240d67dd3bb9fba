"""A class on one host: N students at once, each in a browser session of their own, start a run.

Starts `streamlit run app.py` on a free loopback port and opens N Chromium contexts (each a
separate cookie identity, as N students' browsers would be). Each student opens the Train page with
a plan link of their own (arriving over --arrive-over seconds); once every page is ready they all
click "Start training" together and wait for "Run finished". Bounded in time (--timeout). Prints one JSON line: runs started, finished, failed
and lost (a click that left no run, or a run still not ended when the bound is over), the p50/p95
wait in the queue (from submission to the start of training, read from the run store) and time to
result (click to "Run finished" on the student's page), and the server's RSS at start and end.

All students use the same data, model and image size with different seeds and epochs, as a class
following one lesson does: the frozen backbone's features are computed once and shared.

    python benchmarks/loadtest.py --students 5
    python benchmarks/loadtest.py --students 20 --timeout 1200
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _server import CHROMIUM, CHROMIUM_ARGS, ROOT, cpu_model, dirs_env, rss_mb, streamlit_server

sys.path.insert(0, str(ROOT))


def plan_link(student: int) -> str:
    return (f"/train?dataset=digits&strategy=feature_extractor&image_size=32&epochs={1 + student % 3}"
            f"&seed={student}&per_class=40")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


async def student(browser, url: str, i: int, timeout_s: float, go: asyncio.Event, arrive_s: float) -> dict:
    await asyncio.sleep(arrive_s)           # students come in over the first minute, as a class does
    ctx = await browser.new_context()
    page = await ctx.new_page()
    row = {"student": i, "clicked": None, "result_s": None, "error": None}
    try:
        await page.goto(url + plan_link(i), timeout=120_000)
        button = page.get_by_role("button", name="Start training")
        await button.wait_for(timeout=600_000)
        await go.wait()                       # everyone clicks together
        row["clicked"] = time.time()
        await button.click()
        await page.get_by_text("Run finished").first.wait_for(timeout=timeout_s * 1000)
        row["result_s"] = time.time() - row["clicked"]
    except Exception as e:  # noqa: BLE001  (a student who gets no result is counted, not fatal)
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        await ctx.close()
    return row


async def drive(url: str, n: int, timeout_s: float, chromium: str, arrive_over: float) -> list[dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        go = asyncio.Event()
        tasks = [asyncio.create_task(student(browser, url, i, timeout_s, go, arrive_over * i / max(n, 1)))
                 for i in range(n)]
        await asyncio.sleep(1)
        # Release the clicks once every page is ready (or after a bound, so a slow page cannot hold the class).
        deadline = time.monotonic() + arrive_over + 600
        while time.monotonic() < deadline and not all(t.done() for t in tasks):
            ready = await page_count_ready(browser)
            if ready >= n:
                break
            await asyncio.sleep(1)
        go.set()
        rows = await asyncio.gather(*tasks)
        await browser.close()
    return rows


async def page_count_ready(browser) -> int:
    ready = 0
    for ctx in browser.contexts:
        for page in ctx.pages:
            try:
                if await page.get_by_role("button", name="Start training").count():
                    ready += 1
            except Exception:  # noqa: BLE001  (a page mid-navigation is not ready yet)
                pass
    return ready


def summarise(rows: list[dict], store, t0: float, rss: tuple[float, float]) -> dict:
    runs = [s for s in store.list(limit=10_000) if s.created >= t0 - 1]
    # Queue wait: from submission (created) to the start of training (ended minus the run's own seconds).
    waits = [r["ended"] - r["seconds"] - r["created"] for r in store_rows(store, t0)]
    clicked = sum(1 for r in rows if r["clicked"])
    finished = sum(1 for r in runs if r.status == "finished")
    failed = sum(1 for r in runs if r.status in ("failed", "stopped"))
    lost = clicked - finished - failed
    results = [r["result_s"] for r in rows if r["result_s"] is not None]
    return {"benchmark": "loadtest", "students": len(rows), "clicked": clicked, "started": len(runs),
            "finished": finished, "failed": failed, "lost": lost,
            "queue_wait_s": {"p50": pct(waits, 0.5), "p95": pct(waits, 0.95)},
            "time_to_result_s": {"p50": pct(results, 0.5), "p95": pct(results, 0.95)},
            "server_rss_mb": {"start": round(rss[0]), "end": round(rss[1])},
            "errors": sorted({r["error"] for r in rows if r["error"]})[:5]}


def store_rows(store, t0: float) -> list[dict]:
    from sqlalchemy import select

    from tlcore.store.schema import runs as table
    with store.db.engine.connect() as c:
        rows = c.execute(select(table.c.created, table.c.ended, table.c.seconds)
                         .where(table.c.created >= t0 - 1, table.c.ended.is_not(None),
                                table.c.seconds.is_not(None))).all()
    return [{"created": r.created, "ended": r.ended, "seconds": r.seconds} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=900, help="seconds each student waits for a result")
    ap.add_argument("--arrive-over", type=float, default=60, help="seconds over which the students open the page")
    ap.add_argument("--concurrent", type=int, default=1, help="TLCORE_MAX_CONCURRENT for the server")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.update(dirs_env(tmp))
        niced = tmp / "chromium-nice"   # the students' browsers would be on their own machines
        niced.write_text(f'#!/bin/sh\nexec nice -n 19 {CHROMIUM} "$@"\n')
        niced.chmod(0o755)
        from tlcore.runs import RunStore
        env = {"TLCORE_MAX_CONCURRENT": str(args.concurrent)}
        with streamlit_server(tmp, env=env) as (url, pid):
            rss0, t0 = rss_mb(pid), time.time()
            rows = asyncio.run(drive(url, args.students, args.timeout, str(niced), args.arrive_over))
            rss1 = rss_mb(pid)
            out = summarise(rows, RunStore(), t0, (rss0, rss1))
    out.update({"seconds": round(time.time() - t0, 1), "plan": plan_link(0), "concurrent": args.concurrent, "arrive_over_s": args.arrive_over,
                "cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1),
                "date": time.strftime("%Y-%m-%d")})
    print(json.dumps(out))
    return 0 if out["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
