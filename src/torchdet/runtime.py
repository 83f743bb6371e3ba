"""Process-wide settings for faster CPU inference: how the C allocator recycles large tensors.

A detector's eval allocates and frees hundreds of MB of activations per image. glibc's malloc
serves every block above a moving threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it
on free, so the next forward touches brand-new zeroed pages again: on 2 threads,
``fasterrcnn_resnet50_fpn`` takes about 180k page faults (700 MiB of fresh pages) per 480x640
image and a batch of 4 about 1.4M. `tune_cpu_allocator` raises the mmap threshold to 1 GiB and
the trim threshold to 2 GiB, so those blocks come from malloc's heap and are reused: after two
warm-up calls, no page faults per call for that model at batch 1 or 4. Measured with ``torchdet benchmark`` (2 threads, 480x640): 3-16% off the
eval latency of the ResNet-50 builders, 20-26% off a training step of 2 images, and a peak RSS
between 4% lower and 13% higher (freed memory stays with the process for reuse instead of going
back to the OS).

It changes the whole process, so importing torchdet never does it: the ``torchdet`` commands
that run models call it (``TORCHDET_TUNE_ALLOCATOR=0`` turns that off), and library users opt in
by calling it once at start-up. ``torchdet benchmark`` leaves it off unless ``--tune-allocator``
is given, so its ratios against torchvision compare code with code.
"""
from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune_cpu_allocator", "allocator_tuned", "ENV_VAR"]

ENV_VAR = "TORCHDET_TUNE_ALLOCATOR"

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_tuned = False


def allocator_tuned() -> bool:
    """Whether `tune_cpu_allocator` has changed this process's allocator."""
    return _tuned


def tune_cpu_allocator(mmap_threshold_mib: int = 1024, trim_threshold_mib: int = 2048,
                       respect_env: bool = True) -> bool:
    """Keep large freed blocks in glibc's heap for reuse instead of unmapping them.

    Args:
        mmap_threshold_mib: blocks at least this big still get their own mmap.
        trim_threshold_mib: free memory at the top of the heap beyond this goes back to the OS.
        respect_env: when True, ``TORCHDET_TUNE_ALLOCATOR=0`` in the environment makes this a no-op.

    Returns True when the settings were applied; False where they do not apply (the C library
    is not glibc: macOS, Windows, musl) or the environment turned them off.
    """
    global _tuned
    if respect_env and os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if mmap_threshold_mib <= 0 or trim_threshold_mib <= 0:
        raise ValueError(f"tune_cpu_allocator: thresholds must be positive MiB, got mmap_threshold_mib="
                         f"{mmap_threshold_mib}, trim_threshold_mib={trim_threshold_mib}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt takes an int: cap at 2 GiB - 1.
    limit = 2**31 - 1
    ok = mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold_mib * 2**20, limit)) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, min(trim_threshold_mib * 2**20, limit)) == 1 and ok
    _tuned = _tuned or ok
    return ok
