"""Which photos show the same tile.

The dataset photographs each tile about six times, once under each of six settings
(`exp1` to `exp6` in the file names), in a burst of nearby frame numbers (`num_N`).
The split keeps a tile's photos together by this, and the metrics' intervals count
them for fewer than as many tiles.
"""

from __future__ import annotations

import re

_FRAME = re.compile(r"_num_(\d+)$")


def tile_groups(images: list[str], group_frames: int) -> list[list[str]]:
    """The photos of each tile, sorted: runs of frame numbers at most `group_frames` apart.
    At 0, and for a photo whose name has no frame number, each photo is its own tile."""
    if group_frames <= 0:
        return [[image] for image in sorted(images)]
    frames = {image: _FRAME.search(image) for image in images}
    groups = [[image] for image, frame in sorted(frames.items()) if frame is None]
    numbered = sorted((int(frame[1]), image) for image, frame in frames.items() if frame)
    previous = None
    for number, image in numbered:
        if previous is not None and number - previous <= group_frames:
            groups[-1].append(image)
        else:
            groups.append([image])
        previous = number
    return [sorted(group) for group in groups]
