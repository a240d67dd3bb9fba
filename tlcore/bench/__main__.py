"""`python -m tlcore.bench [--quick | --full] [--cases 1,2] [--json PATH] [--compare PATH]`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from ..device import pick
from .cases import CASES, SIZES, run_suite
from .report import SPEEDUP, compare, details_block, environment, json_lines, table


def _cases(text: str) -> list[int]:
    try:
        picked = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"cases are numbers separated by commas, not {text!r}") from None
    unknown = [c for c in picked if c not in CASES]
    if unknown or not picked:
        raise argparse.ArgumentTypeError(f"choose cases from {', '.join(map(str, CASES))}")
    return picked


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tlcore.bench", description=(
        "The engine against a plain PyTorch reference loop, side by side in one process."))
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="CPU sizes (the default without CUDA): the whole suite in under 10 minutes on 2 cores")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="GPU sizes (the default with CUDA), the ones the targets are stated for")
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny",
                      help="test-only sizes: seconds per case, figures that mean nothing")
    p.add_argument("--cases", type=_cases, default=sorted(CASES), metavar="1,2,...",
                   help="; ".join(f"{k}: {v[0]}" for k, v in CASES.items()))
    p.add_argument("--data-root", type=Path, metavar="DIR", default=None,
                   help="a folder holding Fashion-MNIST in torchvision's layout (FashionMNIST/raw/...); default "
                        "$TLCORE_BENCH_DATA, then the engine's data folder, else synthetic images of its shape")
    p.add_argument("--json", type=Path, metavar="PATH", help="save the results (a list of dicts, one per line below)")
    p.add_argument("--compare", type=Path, metavar="PATH", help="print how each figure moved since a saved --json")
    return p


def _report(results: list, env: dict) -> list[str]:
    """Print the header, the table and the details; return the JSON lines (printed last)."""
    print(f"tlcore bench, {env['size']} sizes, {env['suite_s']:.0f}s: {env['device']} | CPU {env['cpu']} "
          f"({env['cpu_count']} cores) | GPU {env['gpu'] or '-'} | torch {env['torch']} | torchvision "
          f"{env['torchvision']} | python {env['python']} | CPU bf16 {env['cpu_bf16']} | load average "
          f"{env['load_avg_1m']} at start, {env['load_avg_1m_end']} at end")
    print(SPEEDUP)
    print("reference = torchvision transforms (Resize, ToTensor, Normalize) per PIL image in a DataLoader, fp32, NCHW, "
          "the whole network forwarded every step, the same optimiser (AdamW, constant rate)\n")
    print(table(results))
    print()
    print(details_block(results))
    print()
    lines = json_lines(results, env)
    print("\n".join(lines))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    previous = None
    if args.compare is not None:
        try:
            previous = json.loads(args.compare.read_text())
        except (OSError, ValueError) as e:
            p.error(f"cannot read --compare {args.compare}: {e}")
    size = args.size or ("full" if torch.cuda.is_available() else "quick")

    env = {**environment(pick("auto").name), "size": size}
    t0 = time.perf_counter()
    results = run_suite(SIZES[size], args.cases, log=lambda line: print(line, file=sys.stderr, flush=True),
                        data_root=args.data_root)
    env["suite_s"] = round(time.perf_counter() - t0, 1)
    env["load_avg_1m_end"] = environment(env["device"])["load_avg_1m"]

    lines = _report(results, env)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([json.loads(line) for line in lines], indent=1) + "\n")
    if previous is not None:
        print(f"\ncompared with {args.compare}:")
        print("\n".join(compare([json.loads(line) for line in lines], previous)))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
