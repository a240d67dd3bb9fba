"""Seconds to a page's first view, as a student opening it in a fresh session of a warm server sees it.

    python benchmarks/first_view.py [inside ...]

Each page opens in its own process with empty caches (TLCORE_HOME, TLCORE_CACHE_DIR, Streamlit's
resource caches): the app's home page first (the server is up, the student is on it), then the page,
timed from the switch to the end of its script run, through Streamlit's own AppTest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _here(name: str) -> dict:
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    t0 = time.perf_counter()
    at.switch_page(str(ROOT / "views" / f"{name}.py")).run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise SystemExit(f"{name}: {[e.value for e in at.exception]}")
    return {"page": name, "first_view_s": round(seconds, 2), "charts": len(at.get("plotly_chart"))}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--here"]:
        print(json.dumps(_here(argv[1])))
        return 0
    for name in argv or ["inside"]:
        with tempfile.TemporaryDirectory(prefix="tlcore-view-") as tmp:
            env = {**os.environ, "TLCORE_HOME": str(Path(tmp, "home")), "TLCORE_CACHE_DIR": str(Path(tmp, "cache"))}
            out = subprocess.run([sys.executable, __file__, "--here", name], env=env, capture_output=True, text=True,
                                 cwd=ROOT)
        if out.returncode:
            print(f"{name}: failed: {out.stderr.strip().splitlines()[-1:]}")
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:12} first view {r['first_view_s']:6.2f} s ({r['charts']} charts)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
