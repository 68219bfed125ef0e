"""What a server process uses, read from /proc: resident memory now and at its peak, CPU
time, and a sampler that catches the peak while a block of work runs.

One source for every figure: the kernel's high-water mark (VmHWM) exists only in /proc,
so the samples that sit beside it in a report come from there too. The benchmarks report
MB and the reliability suite MiB; both divide the same bytes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

MB = 10**6
MIB = 2**20


def rss_bytes(pid: int) -> int:
    """The process's resident memory now (VmRSS)."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM)."""
    return _status_kb(pid, "VmHWM") * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """The highest resident memory of a process while the block runs: read on entry, every
    `interval` seconds in a thread, and on exit. A process that ends stops the sampling."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._sample():
                return

    def _sample(self) -> bool:
        """Take one reading; False once the process has gone."""
        try:
            self.peak_bytes = max(self.peak_bytes, rss_bytes(self.pid))
        except (OSError, ValueError):
            return False
        return True


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no {field}")
