"""Progress lines of a benchmark run, on stderr so that stdout keeps the verdicts."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """Print `message` to stderr at once, marked as the benchmark's."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
