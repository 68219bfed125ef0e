"""Real tile photos from the dataset: the smallest, a median-sized and the largest one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from service.imaging import read_header

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TilePhoto:
    name: str  # small, typical or large
    path: Path
    data: bytes  # the JPEG file as the camera wrote it
    width: int
    height: int

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "pixels": self.width * self.height,
            "jpeg_bytes": len(self.data),
        }


def dataset_dir() -> Path:
    """The read-only dataset beside the repo, or TILE_DATA_DIR."""
    return Path(
        os.environ.get("TILE_DATA_DIR") or REPO_ROOT.parent / "shared/data/magnetic-tile-defects"
    )


def pick_tiles(folder: Path | None = None) -> dict[str, TilePhoto]:
    """The photos with the fewest, the median and the most pixels, keyed small/typical/large."""
    folder = folder or dataset_dir()
    paths = sorted(folder.glob("MT_*/Imgs/*.jpg"))
    if not paths:
        raise SystemExit(f"error: no tile photos under {folder}; set TILE_DATA_DIR")
    sized = []
    for path in paths:
        data = path.read_bytes()
        header = read_header(data, max_pixels=10**9)
        # The name breaks ties, so the same photos are picked on every machine.
        sized.append((header.width * header.height, str(path), data, header))
    sized.sort(key=lambda item: (item[0], item[1]))
    picks = {"small": sized[0], "typical": sized[len(sized) // 2], "large": sized[-1]}
    return {
        name: TilePhoto(name, Path(path), data, header.width, header.height)
        for name, (_, path, data, header) in picks.items()
    }
