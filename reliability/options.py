"""What one run of the suite may spend: the quick mode for CI, the full mode for figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness import REPO_ROOT

DEFAULT_MODEL = REPO_ROOT / "models" / "segmenter.onnx"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Budget:
    """Counts and durations of one mode; every loop in the suite is bounded by these."""

    fuzz_inputs: int
    fuzz_seconds: float
    fuzz_workers: int
    # Schema-driven cases per operation and generation mode (positive, negative).
    schema_examples: int
    schema_seconds: float
    soak_seconds: float
    soak_baseline_seconds: float  # RSS after this long is the leak baseline
    soak_concurrency: int
    # Tolerated RSS growth from the baseline to the end: the 10% over 2 minutes;
    # a 10-second quick soak sees warm-up growth (thread arenas), so it only flags gross leaks.
    soak_leak_tolerance: float
    silent_connections: int
    # None: test the service's defaults, as deployed.
    header_timeout: float | None
    body_timeout: float | None
    restarts: int
    dvc_scenarios: tuple[str, ...]


QUICK = Budget(
    fuzz_inputs=450,
    fuzz_seconds=20,
    fuzz_workers=4,
    schema_examples=100,
    schema_seconds=30,
    soak_seconds=8,
    soak_baseline_seconds=2,
    soak_concurrency=32,
    soak_leak_tolerance=0.25,
    silent_connections=20,
    header_timeout=1.0,
    body_timeout=2.0,
    restarts=1,
    dvc_scenarios=("killed_with_dvc",),
)
FULL = Budget(
    fuzz_inputs=6000,
    fuzz_seconds=900,
    fuzz_workers=4,
    schema_examples=5000,
    schema_seconds=600,
    soak_seconds=150,
    soak_baseline_seconds=30,
    soak_concurrency=32,
    soak_leak_tolerance=0.10,
    silent_connections=200,
    header_timeout=None,
    body_timeout=None,
    restarts=5,
    dvc_scenarios=("killed_with_dvc", "stage_killed", "rerun_killed"),
)


@dataclass(frozen=True)
class Options:
    model_path: Path
    data_dir: Path
    out_dir: Path
    quick: bool = True
    seed: int = 20240601
    budget: Budget = field(default=QUICK)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def failures_dir(self) -> Path:
        return self.out_dir / "failures"
