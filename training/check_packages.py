"""Stage `check_packages`: record the packages the pipeline runs on.

DVC reruns this stage every time; the stages after it rerun only when the list changes,
so an upgraded torch or onnxruntime retrains and re-exports instead of going unnoticed.
The list holds the pipeline's requirements (requirements/train.txt and what it
includes) and everything they depend on, not test tools installed beside them. It is the
same on every platform that installs those versions: a package only some platforms get
(the CUDA libraries a Linux torch pulls in, uvloop off Windows) is left out, and so are a
build's local version label (torch's "+cpu") and Python's bug-fix number, so that a
laptop with a CPU-only torch does not retrain what a GPU box built.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from training.requirements import normalise, read_requirements

PACKAGES_FILE = Path("reports/packages.txt")
REQUIREMENTS = Path("requirements/train.txt")
# The platforms a dependency must be installed on to be listed: Linux (a server, a GPU
# box, CI), macOS and Windows (a laptop).
PLATFORMS = (
    {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    },
    {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "aarch64",
        "os_name": "posix",
    },
    {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "os_name": "posix",
    },
    {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "os_name": "nt",
    },
)


def main() -> None:
    PACKAGES_FILE.parent.mkdir(parents=True, exist_ok=True)
    PACKAGES_FILE.write_text("\n".join(pipeline_packages(REQUIREMENTS)) + "\n")


def pipeline_packages(requirements: Path) -> list[str]:
    """`name==version` of each installed package the requirements pull in, Python first."""
    found: dict[str, str] = {}
    pending = [
        normalise(requirement.name)
        for requirement in read_requirements(requirements)
        if _on_every_platform(requirement)
    ]
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
        found[name] = Version(distribution.version).public
        pending += [
            normalise(requirement.name)
            for requirement in map(Requirement, distribution.requires or [])
            if _on_every_platform(requirement)
        ]
    lines = [f"{name}=={version}" for name, version in sorted(found.items())]
    # Python by its minor version only: a bug-fix release is not another interpreter.
    return [f"python=={'.'.join(platform.python_version_tuple()[:2])}", *lines]


def _on_every_platform(requirement: Requirement) -> bool:
    """Whether every platform of PLATFORMS installs `requirement` (an extra's are left out)."""
    marker = requirement.marker
    return marker is None or all(
        marker.evaluate({**environment, "extra": ""}) for environment in PLATFORMS
    )


if __name__ == "__main__":
    main()
