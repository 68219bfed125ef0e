"""Stage `check_packages`: record the packages the pipeline runs on.

DVC reruns this stage every time; the stages after it rerun only when the list changes,
so an upgraded torch or onnxruntime retrains and re-exports instead of going unnoticed.
The list holds the pipeline's requirements (requirements/train.txt and what it
includes) and everything they depend on, not test tools installed beside them.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from training.requirements import normalise, requirement_names

PACKAGES_FILE = Path("reports/packages.txt")
REQUIREMENTS = Path("requirements/train.txt")


def main() -> None:
    PACKAGES_FILE.parent.mkdir(parents=True, exist_ok=True)
    PACKAGES_FILE.write_text("\n".join(pipeline_packages(REQUIREMENTS)) + "\n")


def pipeline_packages(requirements: Path) -> list[str]:
    """`name==version` of each installed package the requirements pull in, Python first."""
    found: dict[str, str] = {}
    pending = requirement_names(requirements)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"error: {name} is required by {requirements} but not installed; "
                f"run `pip install -r {requirements}`."
            ) from None
        found[name] = distribution.version
        pending += [
            normalise(requirement.name)
            for requirement in map(Requirement, distribution.requires or [])
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        ]
    lines = [f"{name}=={version}" for name, version in sorted(found.items())]
    return [f"python=={platform.python_version()}", *lines]


if __name__ == "__main__":
    main()
