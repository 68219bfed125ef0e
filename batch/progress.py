"""How far a run is: a bar with the rate and the time left on a terminal, a log line every
few photos otherwise (a CI log, a file, `ray job logs`).

Written here rather than taken from tqdm, which the serving environment does not have.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

# A terminal's bar is redrawn at most this often: a redraw per photo at 100 photos/s
# would cost more than it shows.
REDRAW_SECONDS = 0.2
BAR_WIDTH = 24


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        log_every: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.log_every = log_every
        self.clock = clock
        self.interactive = stream.isatty()
        self.done = 0
        self.started = clock()
        self._drawn_at = -REDRAW_SECONDS
        self._lock = threading.Lock()  # photos finish on several threads

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            now = self.clock()
            if self.interactive:
                if now - self._drawn_at >= REDRAW_SECONDS or self.done == self.total:
                    self._drawn_at = now
                    self.stream.write("\r" + self.status(now))
                    self.stream.flush()
            elif self.done % self.log_every == 0 or self.done == self.total:
                self.stream.write(self.status(now) + "\n")
                self.stream.flush()

    def close(self) -> None:
        """End the bar's line, so that what follows starts on its own."""
        if self.interactive and self.done:
            self.stream.write("\n")
            self.stream.flush()

    def status(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate
        share = self.done / self.total
        text = f"{self.done}/{self.total} photos, {rate:.1f} photos/s, {_duration(left)} left"
        if not self.interactive:
            return text
        filled = round(share * BAR_WIDTH)
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} {text}"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
