"""tlcore.bench: every speed the engine claims, measured against a plain PyTorch loop in the same run.

    python -m tlcore.bench --quick                 # CPU sizes, under 10 minutes on 2 cores
    python -m tlcore.bench                         # full sizes on CUDA (quick without it)
    python -m tlcore.bench --cases 1,4 --json now.json --compare before.json

Each case runs the engine (`tlcore.train.loop.train`, or its feature path) and then the reference
(`reference.py`: torchvision transforms per PIL image in a DataLoader, fp32 NCHW, the whole network
forwarded every step, the same AdamW) on the same images, the same weights and the same device.
speedup = reference time / our time (for rates, ours / reference): above 1 means the engine is faster.

  1  feature_extractor on Fashion-MNIST, EfficientNet-Lite0 and ResNet-18: seconds for 10 epochs
     of head training from a cold feature cache, feature images/s, seconds to a validation accuracy
  2  fine_tune_all, ResNet-18/50 and EfficientNet-Lite0: training images/s after warm-up
  3  gradual_unfreeze over every layer group: total seconds
  4  frozen-backbone inference at 224 px: images/s (engine policy vs fp32 NCHW)
  5  `python -m tlcore train --dataset digits` with cold caches: seconds to its JSON line

Output: a table with PASS/FAIL against the targets, absolute figures (images/s, seconds, peak
memory, dataset and feature-cache bytes), then one JSON line per result (with the device and
versions). Models whose ImageNet file is not cached run with random weights for throughput (same
compute) and say so. Sizes and targets are the two tables at the top of `cases.py`.
"""
from .cases import CASES, GOALS, SIZES, Sizes, run_suite
from .report import Result, Target

__all__ = ["CASES", "GOALS", "SIZES", "Result", "Sizes", "Target", "run_suite"]
