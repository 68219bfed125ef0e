"""What a server process uses, read from /proc: resident memory now and at its peak, CPU
time, and a sampler that catches the peak while a block of work runs.

One source for every figure: the kernel's high-water mark (VmHWM) exists only in /proc,
so the samples that sit beside it in a report come from there too. The benchmarks report
MB and the reliability suite MiB; both divide the same bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
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


def process_tree(pid: int) -> list[int]:
    """The process and its descendants that are alive now, parents first."""
    found, index = [pid], 0
    while index < len(found):
        try:
            tasks = list(Path(f"/proc/{found[index]}/task").iterdir())
        except OSError:  # ended meanwhile
            tasks = []
        for task in tasks:
            try:
                found += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
        index += 1
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of the process and its descendants now, added up."""
    return int(_sum_over_tree(pid, rss_bytes))


def tree_peak_rss_bytes(pid: int) -> int:
    """The process's and its descendants' high-water marks (VmHWM), added up: at least the
    tree's own peak, which the kernel does not keep."""
    return int(_sum_over_tree(pid, peak_rss_bytes))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its living descendants so far."""
    return _sum_over_tree(pid, cpu_seconds)


class RssSampler:
    """The highest resident memory of a process while the block runs: read on entry, every
    `interval` seconds in a thread, and on exit. A process that ends stops the sampling.
    `read` gives the figure for a pid (tree_rss_bytes: the process and its children)."""

    def __init__(
        self, pid: int, interval: float = 0.05, read: Callable[[int], int] = rss_bytes
    ) -> None:
        self.pid = pid
        self.interval = interval
        self.read = read
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
            self.peak_bytes = max(self.peak_bytes, self.read(self.pid))
        except (OSError, ValueError):
            return False
        return True


def _sum_over_tree(pid: int, read: Callable[[int], float]) -> float:
    total = read(pid)  # the process itself must be there: its end is an error
    for descendant in process_tree(pid)[1:]:
        try:
            total += read(descendant)
        except (OSError, ValueError):  # a child that ended meanwhile holds nothing
            continue
    return total


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no {field}")
