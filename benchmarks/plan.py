"""How much a benchmark run measures: the full plan and the quick smoke-run plan."""

from __future__ import annotations

from dataclasses import dataclass

CONCURRENCY = (1, 4, 16)


@dataclass(frozen=True)
class Plan:
    """How much to measure; every loop is bounded by both a count and a time."""

    quick: bool
    inprocess_repetitions: int
    inprocess_seconds: float  # per setup and tile
    original_repetitions: int  # learn.predict, and the resnet34 network, in-process
    requests: int  # per setup and concurrency level
    request_seconds: float
    sweep_seconds: float  # per service configuration and concurrency level
    cold_starts: int  # of the service; each other setup starts once
    startup_timeout: float
    calibration_images: int  # for the INT8 copy


FULL = Plan(False, 300, 20.0, 30, 500, 20.0, 10.0, 5, 180.0, 32)
QUICK = Plan(True, 10, 1.0, 0, 30, 2.0, 1.0, 1, 60.0, 8)
