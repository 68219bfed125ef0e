"""Percentile summaries of timing samples, in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarise_ms(seconds: Sequence[float], percentiles: Sequence[int] = (50, 95)) -> dict:
    """`{"n", "mean_ms", "p50_ms", ...}` for samples given in seconds; empty when no samples."""
    if not seconds:
        return {"n": 0}
    values = np.asarray(seconds, dtype=np.float64) * 1000
    # "higher" reports a latency that was really observed rather than an interpolation,
    # which matters for p99 of a few hundred samples.
    summary = {"n": len(values), "mean_ms": round(float(values.mean()), 3)}
    for q in percentiles:
        summary[f"p{q}_ms"] = round(float(np.percentile(values, q, method="higher")), 3)
    summary["max_ms"] = round(float(values.max()), 3)
    return summary
