"""What the tests and benchmarks share: real servers, datasets and model files to run against."""

from pathlib import Path

# The repository's root folder, wherever the clone is.
REPO_ROOT = Path(__file__).resolve().parents[1]
