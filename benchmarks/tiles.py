"""Real tile photos from the dataset: the smallest, a median-sized and the largest one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.dataset import DatasetError, tile_dataset
from service.imaging import read_header


@dataclass(frozen=True)
class TilePhoto:
    name: str  # small, typical or large
    path: Path
    in_dataset: str  # the path inside the dataset folder, the same on every machine
    data: bytes  # the JPEG file as the camera wrote it
    width: int
    height: int

    def describe(self) -> dict[str, object]:
        return {
            "path": self.in_dataset,
            "width": self.width,
            "height": self.height,
            "pixels": self.width * self.height,
            "jpeg_bytes": len(self.data),
        }


def pick_tiles(folder: Path | None = None) -> dict[str, TilePhoto]:
    """The photos with the fewest, the median and the most pixels, keyed small/typical/large."""
    try:
        folder = folder or tile_dataset()
    except DatasetError as error:
        raise SystemExit(f"error: {error}") from None
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
        name: TilePhoto(
            name, Path(path), str(Path(path).relative_to(folder)), data, header.width, header.height
        )
        for name, (_, path, data, header) in picks.items()
    }
