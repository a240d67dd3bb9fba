"""One device policy for the whole engine: CUDA (bf16 autocast, channels_last), MPS, else CPU."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass

import torch

from .settings import read


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    amp_dtype: torch.dtype | None      # autocast dtype for inference (frozen layers, evaluation); None: fp32
    channels_last: bool
    name: str                          # for people: "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu (2 threads)"
    train_amp: bool = True             # also autocast the training steps (on a CPU: per model, see for_model)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self, training: bool = False) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None or (training and not self.train_amp):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def for_model(self, spec) -> "DevicePolicy":
        """The policy for training `spec` (a ModelSpec). GPUs train every model under autocast. A CPU
        with native bf16 does so only where the model gains from it (ModelSpec.cpu_bf16_training)."""
        if self.device.type != "cpu" or self.amp_dtype is None:
            return self
        train = bool(spec.cpu_bf16_training)
        return dataclasses.replace(self, train_amp=train,
                                   name=self.name.replace("bf16 inference", "bf16 inference and training" if train
                                                          else "bf16 inference"))


def _cpu_threads() -> int:
    # All physical cores; hyper-threads rarely help convolutions and a busy host hates oversubscription.
    return read("TLCORE_CPU_THREADS")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def _cpu_has_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_vnni() -> bool:
    """AVX512-VNNI or AVX-VNNI: int8 dot products accumulate in int32 without saturating."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def cpu_bf16_forced_off() -> bool:
    """TLCORE_CPU_BF16=0: take the path of a CPU without bf16 even on one that has it (fp32, with
    int8 where it pays), to measure or reproduce what most laptops get."""
    return not read("TLCORE_CPU_BF16")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def auto_device_type() -> str:
    """What "auto" trains on: "cuda", else "mps", else "cpu". Unlike pick(), it changes no settings."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if _mps_available() else "cpu"


def pick(choice: str = "auto") -> DevicePolicy:
    """The device a plan asked for, or the best one present for "auto"."""
    from .errors import PlanError

    if choice in ("auto", "cuda") and torch.cuda.is_available():
        idx = torch.cuda.current_device()
        bf16 = torch.cuda.is_bf16_supported()
        # TF32 for the fp32 parts (loss, optimiser maths); bf16 autocast for the convolutions.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        return DevicePolicy(torch.device("cuda", idx), torch.bfloat16 if bf16 else torch.float16, True,
                            f"cuda:{idx} ({torch.cuda.get_device_name(idx)})")
    if choice == "cuda":
        raise PlanError("device", "CUDA was asked for but no NVIDIA GPU is available here")
    if choice in ("auto", "mps") and _mps_available():
        return DevicePolicy(torch.device("mps"), None, False, "mps (Apple GPU)")
    if choice == "mps":
        raise PlanError("device", "MPS was asked for but this machine has no Apple GPU")
    threads = _cpu_threads()
    torch.set_num_threads(threads)
    # channels_last lets oneDNN pick its fast convolution kernels (1.45x on depthwise-heavy nets here);
    # bf16 autocast only where the CPU does bf16 arithmetic natively (AVX512-BF16 / AMX): 2.3-3.8x on
    # frozen features there. Whether training steps use it too depends on the model (for_model).
    # Without it, frozen features run fused fp32 or int8 (train/features.py FrozenPrefix).
    bf16 = _cpu_has_bf16() and not cpu_bf16_forced_off()
    return DevicePolicy(torch.device("cpu"), torch.bfloat16 if bf16 else None, True,
                        f"cpu ({threads} threads{', bf16 inference' if bf16 else ''})", train_amp=bf16)


def describe() -> str:
    """What the Home page shows: the device a run would use."""
    return pick("auto").name
