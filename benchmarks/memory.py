"""Peak memory of a piece of work, measured in the same process."""

from __future__ import annotations

import os
import threading
import time

import torch

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


class PeakMemory:
    """Context manager recording peak memory while it is open.

    `peak_bytes` is the whole footprint at its highest (model weights included) and
    `increase_bytes` the part above the level at entry. On CUDA both come from the caching
    allocator; on the CPU from the resident set size, sampled every `interval` seconds in a
    background thread, so spikes shorter than that are missed.
    """

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = device
        self.interval = interval
        self.peak_bytes = 0
        self.increase_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            return self
        self._baseline = resident_bytes()
        self._highest = self._baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._highest = max(self._highest, resident_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            self.increase_bytes = self.peak_bytes - self._baseline
            return
        self._stop.set()
        self._thread.join()
        self._highest = max(self._highest, resident_bytes())
        self.peak_bytes = self._highest
        self.increase_bytes = self._highest - self._baseline
