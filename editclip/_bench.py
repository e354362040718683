"""Timing and peak-memory measurement shared by the ``editclip bench`` commands.

Ratios are what the benchmarks report: every variant runs in the same process on the same inputs,
interleaved over repetitions, so machine load affects all of them alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))


def _release_free_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc), so a run's growth shows in its RSS."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory above the level at entry: the CUDA allocator's peak on GPU; on CPU the kernel's peak RSS
    after the allocator's free pages are released (sampled RSS where the peak mark cannot be reset)."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = device
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        gc.collect()
        _release_free_memory()
        self._base = _rss_bytes()
        if not _reset_peak_rss():
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self._base)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() - self._base)
        else:
            self.peak = max(0, _peak_rss_bytes() - self._base)


@dataclass
class Timing:
    """Median seconds per call and peak extra memory of one variant."""

    name: str
    seconds: float
    peak_bytes: int
    items: int

    @property
    def throughput(self) -> float:
        return self.items / self.seconds


def measure(
    variants: dict[str, Callable[[], object]], items: int, device: torch.device, repeats: int = 5, warmup: int = 1
) -> list[Timing]:
    """Time each variant ``repeats`` times, interleaved; report medians and the peak memory of one more,
    untimed call (run after the warm-up, so one-time caches are not counted)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    peaks: dict[str, int] = {}
    for name, fn in variants.items():
        with PeakMemory(device) as mem:
            fn()
            _sync(device)
        peaks[name] = mem.peak
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return [Timing(name, statistics.median(times[name]), peaks[name], items) for name in variants]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_table(timings: list[Timing], baseline: str, unit: str = "img") -> str:
    """A fixed-width table: throughput, ratio to the baseline's throughput, peak memory."""
    base = next(t for t in timings if t.name == baseline)
    lines = [f"{'variant':<34} {unit + '/s':>10} {'ratio':>7} {'peak MiB':>9}"]
    for t in timings:
        ratio = t.throughput / base.throughput
        lines.append(f"{t.name:<34} {t.throughput:>10.2f} {ratio:>7.3f} {t.peak_bytes / 2**20:>9.1f}")
    return "\n".join(lines)
