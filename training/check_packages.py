"""Stage `check_packages`: record the installed packages every other stage depends on.

DVC reruns this stage every time; the stages after it rerun only when the list changes,
so an upgraded torch or onnxruntime retrains and re-exports instead of going unnoticed.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

PACKAGES_FILE = Path("reports/packages.txt")


def main() -> None:
    PACKAGES_FILE.parent.mkdir(parents=True, exist_ok=True)
    PACKAGES_FILE.write_text("\n".join(installed_packages()) + "\n")


def installed_packages() -> list[str]:
    """`name==version` for each installed distribution, sorted, Python version first."""
    found = {
        (dist.metadata["Name"] or "").lower(): dist.version for dist in metadata.distributions()
    }
    lines = [f"{name}=={version}" for name, version in sorted(found.items()) if name]
    return [f"python=={platform.python_version()}", *lines]


if __name__ == "__main__":
    main()
