"""Timing and peak-memory measurement of one call, on CPU or CUDA.

CPU peak memory is the peak resident set size *above the RSS at the start of the call*: the kernel's
high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` before the call and read after
it, and ``malloc_trim`` first hands memory freed by earlier calls back to the OS, so it cannot hide a
later call's peak. malloc is otherwise left as it is, so timings are those of a normal process.
tracemalloc is not used: it only sees Python's allocator, not tensor storage. On CUDA the peak is
``torch.cuda.max_memory_allocated`` (all live tensors, model included) after
``reset_peak_memory_stats``.
"""

from __future__ import annotations

import ctypes
import gc
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _load_libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _load_libc()


def release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so RSS starts from live memory."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_peak_supported() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") > 0


@dataclass
class Call:
    seconds: float  # wall clock
    cpu_seconds: float  # this process's user + system time: less sensitive to other processes' load
    peak_bytes: int


def measure_call(fn: Callable[[], object], device: torch.device) -> Call:
    """Wall time, process CPU time and peak memory of ``fn()`` (CUDA work is synchronised)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cpu_start, start = time.process_time(), time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        return Call(seconds, cpu_seconds, int(torch.cuda.max_memory_allocated(device)))
    release_free_memory()
    _CLEAR_REFS.write_text("5")
    baseline = _status_kib("VmRSS")
    cpu_start, start = time.process_time(), time.perf_counter()
    fn()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = max(_status_kib("VmHWM") - baseline, 0)
    return Call(seconds, cpu_seconds, peak * 1024)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])
