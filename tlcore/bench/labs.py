"""What a student waits for: each lab's page-default run, timed, with the lesson's figure it showed.

One row per thing a page runs from its defaults (the plan its controls start from, seed 0). `run_row`
runs one through the run store as the dashboard's queue does and returns the seconds and the figure;
`python -m tlcore.bench.labs` runs each row in a fresh process with fresh caches (`TLCORE_HOME`,
`TLCORE_CACHE_DIR`): what a student's first press costs, imports and model build included.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..train.plan import CPU_IMAGE_SIZE, Plan


@dataclass(frozen=True)
class Row:
    name: str
    title: str                        # what the student presses, on which page
    target_s: float                   # issue 29's target on a quiet 2-core CPU
    plan: Callable[[], Plan]          # the page's default plan
    figure: Callable[[Any], tuple[str, float]]   # finished run -> (what the lesson reads, its value)
    plain: dict[str, str] | None = None   # the settings of its plain implementation (FP32, UNSHARED)


# The plain implementation of a lab's computation, per row (Row.plain): what a script without the engine's
# speed-ups does. FP32: no bf16 autocast, no int8 features (a lab that computes its frozen codes once, as
# any script would, or trains small networks from scratch, differs only there: its ratio says how little
# the engine adds). UNSHARED: also no room in the frozen-feature cache, so every arm, seed, cut and epoch
# runs its frozen layers again from the images (raw images through the network, the frozen part under
# no_grad), as a script that does not share them does.
FP32 = {"TLCORE_CPU_BF16": "0", "TLCORE_CPU_INT8": "0"}
UNSHARED = {**FP32, "TLCORE_FEATURE_CACHE_MB": "0"}


def _results(run, schema: str) -> list[dict]:
    return [r.values for r in run.results if r.schema == schema]


# --- the page-default plans (the same builders the pages call) --------------------------------------------
def _probe_plan() -> Plan:
    return Plan(image_size=CPU_IMAGE_SIZE).replace(kind="probe", strategy="feature_extractor", head="linear")


def _probe_figure(run) -> tuple[str, float]:
    from ..labs import probe
    rows, _ = probe.table(run)
    best, top = probe.best_group(rows), rows[-1]
    middle = best["index"] not in (0, len(rows) - 1)
    return "best middle group - top group", round(best["val_acc"] - top["val_acc"] if middle else 0.0, 4)


def _cuts_plan() -> Plan:
    return _probe_plan().replace(kind="cut_finetune", strategy="fine_tune_top", top_groups=1, options={"epochs": 1})


def _cuts_figure(run) -> tuple[str, float]:
    rows = _results(run, "cut_finetune")
    return f"best cut's val acc ({len(rows)} cuts)", round(max(r["val_acc"] for r in rows), 4)


def _similarity_plan() -> Plan:
    return Plan(image_size=CPU_IMAGE_SIZE).replace(kind="similarity", strategy="feature_extractor", head="linear")


def _similarity_figure(run) -> tuple[str, float]:
    v = _results(run, "similarity")[0]
    return f"CNN - pixel probe accuracy ({v['verdict']})", round(v["cnn_accuracy"] - v["pixel_accuracy"], 4)


def _dann_plan() -> Plan:
    from ..labs import dann
    return dann.make_plan()


def _dann_figure(run) -> tuple[str, float]:
    from ..labs import dann
    f = {v["arm"]: v for v in _results(run, dann.FINAL)}
    return "DANN - source only target accuracy", round(f["dann"]["target_acc"] - f["source_only"]["target_acc"], 4)


def _nt_plan() -> Plan:
    from ..labs import negative_transfer as nt
    return nt.make_plan()


def _nt_figure(run) -> tuple[str, float]:
    from ..labs import negative_transfer as nt
    _, rows = nt.verdicts(nt.per_seed(run))
    by = {r["source"]: r for r in rows}
    return (f"gap misleading ({by['misleading']['verdict']}; related {by['related']['verdict']})",
            round(by["misleading"]["gap"], 4))


def _mt_plan() -> Plan:
    from ..labs import multitask as mt
    return mt.lab_plan()


def _mt_figure(run) -> tuple[str, float]:
    m = run.metrics
    return "gain in B (joint - single)", round(m["joint_B"] - m["single_B"], 4)


def _fg_plan() -> Plan:
    from ..labs import forgetting as fg
    return fg.make_plan()


def _fg_figure(run) -> tuple[str, float]:
    from ..labs import forgetting as fg
    f = fg.finals(run)
    return "gradual - discriminative, skill kept", round(f["gradual"]["skill_kept"] - f["discriminative"]["skill_kept"], 4)


def _fs_plan() -> Plan:
    from ..labs import few_shot as fs
    return fs.lab_plan()


def _fs_figure(run) -> tuple[str, float]:
    from ..labs import few_shot as fs
    at = {a: {r["k"]: r["mean"] for r in rows} for a, rows in fs.curves(run.results).items()}
    lo = min(at["prototypes"])
    return f"k={lo}: prototypes - best trained", round(at["prototypes"][lo] - max(at["logreg"][lo], at["fine_tune"][lo]), 4)


def _depth_plan() -> Plan:
    from ..labs import depth as dl
    return dl.lab_plan()


def _depth_figure(run) -> tuple[str, float]:
    from ..labs import depth as dl
    rows = dl.arm_rows(run.results)
    return "sigmoid plain: log10 first/last gradient", round(rows["sigmoid"]["orders"], 3)


def _zs_plan() -> Plan:
    from ..labs import zero_shot as zs
    return zs.lab_plan()


def _zs_figure(run) -> tuple[str, float]:
    from ..labs import zero_shot as zs
    out = zs.outcome(run.results)
    return "unseen accuracy - scrambled", round(out["yours"]["acc"] - out["scrambled"]["acc"], 4)


ROWS: dict[str, Row] = {r.name: r for r in (
    Row("probe", "Where to transfer: Run the probe", 30, _probe_plan, _probe_figure, FP32),
    Row("dann", "Domain adaptation: Train", 30, _dann_plan, _dann_figure, FP32),
    Row("negative_transfer", "Negative transfer: Run the comparison", 30, _nt_plan, _nt_figure, UNSHARED),
    Row("multitask", "Multi-task: Train", 30, _mt_plan, _mt_figure, FP32),
    Row("forgetting", "Forgetting: Fine-tune five ways", 30, _fg_plan, _fg_figure, UNSHARED),
    Row("few_shot", "Few-shot: Run", 30, _fs_plan, _fs_figure, FP32),
    Row("depth", "Why depth was hard: Train the networks", 30, _depth_plan, _depth_figure, FP32),
    Row("zero_shot", "Zero-shot: Run", 30, _zs_plan, _zs_figure, FP32),
    Row("cut_finetune", "Where to transfer: Fine-tune from every cut (1 epoch)", 60, _cuts_plan, _cuts_figure,
        UNSHARED),
    Row("similarity", "Strategy guide: Estimate similarity", 5, _similarity_plan, _similarity_figure, FP32),
)}


def run_row(row: Row, owner: str = "bench") -> dict[str, Any]:
    """Run the row's plan through the run store, as the dashboard's queue does; seconds and figure."""
    from ..labs import run_plan
    from ..runs import RunStore
    plan = row.plan()
    store = RunStore()
    t0 = time.perf_counter()
    run_id = store.create(plan, owner=owner)
    run_plan(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    seconds = time.perf_counter() - t0
    run = store.load(run_id, with_steps=False)
    if run.status != "finished":
        raise RuntimeError(f"{row.name}: the run ended {run.status}: {run.message}")
    what, value = row.figure(run)
    return {"row": row.name, "run_s": round(seconds, 2), "figure": what, "value": value}




def run_cold(name: str, env: dict[str, str] | None = None, plain: bool = False) -> dict[str, Any]:
    """One row in a fresh process with empty caches: the seconds from the process's start to the result.
    `plain`: the plain implementation of the same computation (the row's `plain` settings)."""
    with tempfile.TemporaryDirectory(prefix="tlcore-labtime-") as tmp:
        e = {**os.environ, **(env or {}), **((ROWS[name].plain or FP32) if plain else {}), "TLCORE_HOME": str(Path(tmp, "home")),
             "TLCORE_CACHE_DIR": str(Path(tmp, "cache"))}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "tlcore.bench.labs", "--here", name], env=e,
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        return {"row": name, "error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "cold_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlcore.bench.labs",
                                description="each lab's page-default run from a cold start: seconds and lesson figure")
    p.add_argument("rows", nargs="*", default=list(ROWS), help=f"rows to run (default all): {', '.join(ROWS)}")
    p.add_argument("--here", action="store_true", help="run in this process with its caches (one row; JSON line)")
    p.add_argument("--json", type=Path, help="also save the rows as JSON")
    args = p.parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if args.here:
        for name in args.rows:
            print(json.dumps(run_row(ROWS[name])), flush=True)
        return 0
    from .report import environment
    from ..device import pick
    env = environment(pick("auto").name)
    print(f"CPU {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, load {env['load_avg_1m']}", flush=True)
    got = []
    for name in args.rows:
        r = run_cold(name)
        got.append({**r, "target_s": ROWS[name].target_s})
        if "error" in r:
            print(f"{name:18} ERROR {r['error']}", flush=True)
        else:
            ok = "ok " if r["cold_s"] <= ROWS[name].target_s else "OVER"
            print(f"{name:18} {r['cold_s']:7.1f} s cold ({r['run_s']:6.1f} s run) target {ROWS[name].target_s:4.0f} s "
                  f"{ok}  {r['figure']}: {r['value']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": got}, indent=1) + "\n")
    return 1 if any("error" in r for r in got) else 0


if __name__ == "__main__":
    sys.exit(main())
