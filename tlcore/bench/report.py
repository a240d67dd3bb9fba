"""How the bench measures, and how it reports: a table for people, one JSON line per result for tools.

Speedup is always reference time / our time (for a rate: our images/s / reference images/s), so
2.0 means the engine did the same work in half the time, and anything below 1.0 means it was slower.
"""
from __future__ import annotations

import ctypes
import gc
import glob
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torchvision

SPEEDUP = "speedup = reference time / our time (for rates: ours / reference); above 1 means the engine is faster"


# ---------------------------------------------------------------------------------------------
#                                        Measurement
# ---------------------------------------------------------------------------------------------
class Measure:
    """Wall time of the work inside `with` (CUDA synchronised at both ends, so queued kernels count)
    and its peak memory: torch.cuda.max_memory_allocated on a GPU, else the process's peak RSS
    (getrusage), with the high-water mark reset on entry where Linux allows it. `added_mb` is the
    peak less what was already held on entry: the part this work is responsible for. `cpu_wait` is
    how many of our threads, on average, sat ready to run while another process had the CPU: above
    ~0.2 the figure was disturbed by a busy neighbour (Linux schedstat; None elsewhere)."""

    def __init__(self, device: torch.device, *, memory: bool = True, images: int = 0) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.memory, self.images = memory, images
        self.seconds = 0.0
        self.peak_mb: float | None = None
        self.added_mb: float | None = None
        self.cpu_wait: float | None = None
        self.peak_is_process_wide = False   # True when the RSS mark could not be reset: peak since process start

    def __enter__(self) -> "Measure":
        if self.memory:
            self._reset_peak()
            self._base_mb = self._peak_mb()   # right after a reset the high-water mark is what is held now
        self._sync()
        self._wait0 = _runqueue_wait_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = self.lap()
        wait = _runqueue_wait_s()
        if wait is not None and self._wait0 is not None:
            self.cpu_wait = max(wait - self._wait0, 0.0) / max(self.seconds, 1e-9)
        if self.memory:
            self.peak_mb = self._peak_mb()
            self.added_mb = None if self.peak_is_process_wide else self.peak_mb - self._base_mb

    def lap(self) -> float:
        self._sync()
        return time.perf_counter() - self.t0

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        # Hand freed memory back first, so whichever side runs second does not look lighter by reusing
        # the first side's pages.
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:  # Linux >= 4.0: "5" resets VmHWM, which getrusage's ru_maxrss reports
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.peak_is_process_wide = True

    def _peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10   # bytes on macOS, KiB on Linux


def _runqueue_wait_s() -> float | None:
    """Seconds this process's threads have spent runnable but not running, summed over threads."""
    total = 0
    files = glob.glob("/proc/self/task/*/schedstat")
    for path in files:
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9 if files else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict[str, Any]:
    """What a figure depends on besides the code. The load average matters on a shared machine."""
    return {"device": device, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "cpu_bf16": cpu_bf16_state()}


def cpu_bf16_state() -> str:
    """"native", "absent", or "forced off" (TLCORE_CPU_BF16=0 on a CPU that has it): which CPU path ran."""
    from ..device import _cpu_has_bf16, cpu_bf16_forced_off

    if not _cpu_has_bf16():
        return "absent"
    return "forced off (TLCORE_CPU_BF16=0)" if cpu_bf16_forced_off() else "native"


# ---------------------------------------------------------------------------------------------
#                                          Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    label: str
    value: float | None
    op: Literal[">=", "<"]
    threshold: float

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.threshold if self.op == ">=" else self.value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "op": self.op, "threshold": self.threshold,
                "pass": self.passed}


@dataclass
class Result:
    """One measured line: our figure and the reference's for the same work, plus absolute details."""
    case: int
    name: str                       # unique within its case, e.g. "resnet18"
    metric: str                     # what `ours` and `reference` are, with the unit
    ours: float | None
    reference: float | None = None
    rate: bool = False              # True: higher is better (images/s); False: a time
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    error: str = ""
    absent: str = "-"               # what the table shows for a figure that is None ("not reached")

    @property
    def speedup(self) -> float | None:
        if not self.ours or not self.reference:
            return None
        return self.ours / self.reference if self.rate else self.reference / self.ours

    def to_dict(self, env: dict[str, Any]) -> dict[str, Any]:
        return {"case": self.case, "name": self.name, "metric": self.metric, "ours": _round(self.ours),
                "reference": _round(self.reference), "speedup": _round(self.speedup),
                "higher_is_better": self.rate, "targets": [t.to_dict() for t in self.targets],
                "details": {k: _round(v) for k, v in self.details.items()}, "notes": self.notes,
                "error": self.error, "env": env}


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


# ---------------------------------------------------------------------------------------------
#                                           Output
# ---------------------------------------------------------------------------------------------
def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _target_cell(t: Target) -> str:
    unit = "x" if "speedup" in t.label else ""
    return f"{t.label} {'≥' if t.op == '>=' else '<'}{fmt(t.threshold)}{unit} {'PASS' if t.passed else 'FAIL'}"


def table(results: list[Result]) -> str:
    head = ("case", "name", "metric", "ours", "reference", "speedup", "targets")
    rows = [head]
    for r in results:
        cells = "; ".join(_target_cell(t) for t in r.targets) or "-"
        if r.error:
            cells = f"ERROR: {r.error}"
        speed = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        ours, ref = (fmt(v) if v is not None else r.absent for v in (r.ours, r.reference))
        rows.append((str(r.case), r.name, r.metric, ours, ref, speed, cells))
    width = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, width)) + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def details_block(results: list[Result]) -> str:
    """Absolute figures and notes under the table, one indented block per result."""
    out = []
    for r in results:
        if r.details:
            out.append(f"[{r.case} {r.name}] " + ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}"
                                                          for k, v in r.details.items()))
        out += [f"[{r.case} {r.name}] note: {n}" for n in r.notes]
    return "\n".join(out)


def json_lines(results: list[Result], env: dict[str, Any]) -> list[str]:
    return [json.dumps(r.to_dict(env), sort_keys=False) for r in results]


def compare(current: list[dict[str, Any]], previous: list[dict[str, Any]]) -> list[str]:
    """One line per result: how our figure and the speedup moved since `previous` (a saved --json)."""
    before = {(d["case"], d["name"]): d for d in previous}
    lines = []
    for d in current:
        p = before.get((d["case"], d["name"]))
        label = f"case {d['case']} {d['name']}"
        if p is None or not p.get("ours") or not d.get("ours"):
            lines.append(f"{label}: no earlier figure to compare")
            continue
        # > 1 always means "better now": faster rate, or shorter time.
        change = d["ours"] / p["ours"] if d["higher_is_better"] else p["ours"] / d["ours"]
        line = f"{label}: ours {fmt(d['ours'])} vs {fmt(p['ours'])} {d['metric']} ({change:.2f}x better now)"
        if d.get("speedup") and p.get("speedup"):
            line += f"; speedup {d['speedup']:.2f}x vs {p['speedup']:.2f}x"
        if p.get("env", {}).get("device") != d.get("env", {}).get("device"):
            line += f"  [different device: {p.get('env', {}).get('device')}]"
        lines.append(line)
    return lines
