"""Which precision ``precision="auto"`` means on this machine: bf16 autocast only where it is faster.

CUDA: bf16 when the GPU supports it. CPU: bf16 only with native bf16 kernels. On Linux the CPU flags say
so (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo); elsewhere a short measured probe decides, and its
answer is cached in the user cache directory. PyTorch's own "mkldnn bf16 supported" answer is not used:
it is True on any AVX-512 CPU, and on a Xeon with AVX-512 but without avx512_bf16 bf16 trained 2.5×
slower than fp32 (fastnet ×½: 24–28 vs 61–65 images/s); on an AVX2-only EPYC 16× slower (33 vs 533).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PROBE_MIN_SPEEDUP = 1.1  # bf16 must beat fp32 clearly: a tie is not worth bf16's rounding


def cpu_flags() -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return None


def cache_dir() -> Path:
    """User cache directory of advrbd (``ADVRBD_CACHE`` or the platform's usual place)."""
    if os.environ.get("ADVRBD_CACHE"):
        return Path(os.environ["ADVRBD_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "advrbd"


def _probe_once(dtype_bf16: bool, steps: int = 6) -> float:
    """Seconds of ``steps`` training steps of a small conv net on 64 random 32×32 images."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                                  torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))
    net = net.to(memory_format=torch.channels_last)
    x = torch.rand(64, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), generator=g)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    best = float("inf")
    for i in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_bf16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step sets up oneDNN's kernels
            best = min(best, time.perf_counter() - t)
    return best


def measured_bf16_speedup() -> float:
    """fp32 step time / bf16 step time of the probe, cached per CPU, thread count and torch version."""
    key = f"{platform.machine()}|{platform.processor()}|{torch.get_num_threads()}|{torch.__version__}"
    path = cache_dir() / "precision_probe.json"
    try:
        cached = json.loads(path.read_text())
        if key in cached:
            return float(cached[key])
    except (OSError, ValueError):
        cached = {}
    speedup = _probe_once(False) / max(1e-9, _probe_once(True))
    try:
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps({**cached, key: speedup}))
    except OSError as e:  # a read-only home must not stop training
        log.debug("could not cache the precision probe in %s: %s", path, e)
    return speedup


@functools.lru_cache(maxsize=None)
def precision_choice(device_type: str) -> tuple[bool, str]:
    """(whether bf16 is faster here, why), for ``precision="auto"``."""
    if device_type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, "GPU supports bf16" if ok else "GPU without bf16"
    if device_type != "cpu":
        return False, f"{device_type}: fp32"
    flags = cpu_flags()
    if flags is not None:
        native = [f for f in NATIVE_BF16_FLAGS if f in flags]
        if native:
            return True, f"CPU has native bf16 ({', '.join(native)})"
        return False, "CPU without native bf16 (no avx512_bf16 / amx_bf16 in its flags)"
    speedup = measured_bf16_speedup()
    ok = speedup >= PROBE_MIN_SPEEDUP
    return ok, f"measured bf16 speed-up {speedup:.2f}x on this CPU"


def bf16_is_fast(device_type: str) -> bool:
    """Whether ``precision="auto"`` means bf16 autocast on this device type (see ``precision_choice``)."""
    return precision_choice(device_type)[0]
