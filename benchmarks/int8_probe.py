"""Does int8 cost the linear probe accuracy? Features of one frozen backbone computed in fp32 and in
int8 (the engine's own FrozenPrefix, calibrated on the training images), a logistic-regression probe
on each, validation accuracy side by side.

    python benchmarks/int8_probe.py --data-root ../shared/data --models resnet18,resnet50 --size 112

Models whose ImageNet file is not cached run with random weights (said in the output): then the
figures tell how int8 treats that architecture's arithmetic, not what a pretrained probe scores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere, like benchmarks/quick.sh

from tlcore.data import load_dataset
from tlcore.device import pick
from tlcore.models import MODELS, build_network, weights_status
from tlcore.train.features import FrozenPrefix, compute_prefix, relative_error
from tlcore.train.pipeline import Preprocess
from tlcore.train.sklearn_heads import fit_predict


def probe(train_f: torch.Tensor, train_y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor) -> float:
    pred, _, _ = fit_predict("logreg", train_f.float().numpy(), train_y.numpy(), val_f.float().numpy(), 0)
    return float((torch.as_tensor(pred) == val_y).float().mean())


def features(net, data, prep, policy, int8: bool) -> tuple[torch.Tensor, torch.Tensor, FrozenPrefix]:
    env = os.environ.get("TLCORE_CPU_INT8")
    os.environ["TLCORE_CPU_INT8"] = "1" if int8 else "0"   # both sides whatever the default
    try:
        prefix = FrozenPrefix(net, len(net.groups), prep, policy)
    finally:
        os.environ.pop("TLCORE_CPU_INT8") if env is None else os.environ.__setitem__("TLCORE_CPU_INT8", env)
    prefix.calibrate(data.train_x, planned_images=10**6)
    tr = compute_prefix(net, data.train_x, len(net.groups), prep, policy, 64, prefix=prefix)
    va = compute_prefix(net, data.val_x, len(net.groups), prep, policy, 64, prefix=prefix)
    return tr, va, prefix


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--datasets", default="digits,fashion_mnist")
    p.add_argument("--models", default="resnet18")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--val", type=int, default=1000, help="validation images at most")
    p.add_argument("--bits", choices=("auto", "8a8w", "8a7w", "7a8w"), default="auto",
                   help="activation and weight bits: auto is the engine's rule for this CPU (quantize.default_bits); "
                        "7a8w is PyTorch's default")
    args = p.parse_args()
    from tlcore.models import quantize
    if args.bits != "auto":
        forced = (int(args.bits[0]), int(args.bits[2]))
        quantize.default_bits = lambda: forced   # what quantize() reads for its default
    bits = "{}a{}w".format(*quantize.default_bits())
    policy = dataclasses.replace(pick("cpu"), amp_dtype=None, train_amp=False)   # the no-bf16 path
    for ds in args.datasets.split(","):
        data = load_dataset(ds, image_size=28, per_class=args.per_class, root=args.data_root, download=False)
        data = dataclasses.replace(data, val_x=data.val_x[: args.val], val_y=data.val_y[: args.val])
        for model in args.models.split(","):
            spec = MODELS[model]
            torch.manual_seed(0)
            net = build_network(model, data.num_classes, pretrained=weights_status(model) != "needs download").eval()
            prep = Preprocess(args.size, spec.mean, spec.std, policy)
            t = time.perf_counter()
            f32 = features(net, data, prep, policy, int8=False)
            t32 = time.perf_counter() - t
            t = time.perf_counter()
            q8 = features(net, data, prep, policy, int8=True)
            t8 = time.perf_counter() - t
            a32, a8 = probe(f32[0], data.train_y, f32[1], data.val_y), probe(q8[0], data.train_y, q8[1], data.val_y)
            print(json.dumps({"dataset": ds, "model": model, "weights": "ImageNet" if weights_status(model) !=
                              "needs download" else "random init", "size": args.size, "train": len(data.train_y),
                              "val": len(data.val_y), "mode": q8[2].mode,
                              "bits": bits, "int8_check_error": q8[2].int8_error,
                              "feature_rel_error": round(relative_error(q8[1], f32[1]), 4),
                              "acc_fp32": round(a32, 4), "acc_int8": round(a8, 4), "points": round(100 * (a8 - a32), 2),
                              "fp32_s": round(t32, 1), "int8_s_with_calibration": round(t8, 1),
                              "load_avg": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
