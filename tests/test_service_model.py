"""The committed model, served for real, finds real defects and leaves clean tiles clean."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.server import running_server
from tests.service_fixtures import REAL_MODEL, TILE_DATA_DIR

pytestmark = pytest.mark.slow

DEFECT_CLASSES = ("MT_Blowhole", "MT_Break", "MT_Uneven")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    assert REAL_MODEL.is_file(), f"{REAL_MODEL} is missing: run `dvc repro` or `git checkout`"
    with (
        running_server(REAL_MODEL) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http_client,
    ):
        yield http_client


@pytest.mark.parametrize("class_dir", DEFECT_CLASSES)
def test_masks_overlap_the_ground_truth_of_large_defects(
    client: httpx.Client, class_dir: str
) -> None:
    photo = _largest_defect(TILE_DATA_DIR / class_dir / "Imgs")
    truth = cv2.imread(str(photo.with_suffix(".png")), cv2.IMREAD_GRAYSCALE) >= 128
    response = client.post("/segment", files={"image": photo.read_bytes()})
    assert response.status_code == 200
    mask = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == truth.shape
    overlap = np.count_nonzero((mask > 0) & truth)
    assert overlap > 0.2 * np.count_nonzero(truth), f"{photo.name}: the defect was missed"


def test_info_reports_the_models_test_metrics(client: httpx.Client) -> None:
    info = client.get("/info").json()
    metrics = info["model"]["test_metrics"]
    assert 0 < metrics["dice_defect"] <= 1
    assert set(metrics["per_class_dice"]) == {"Blowhole", "Break", "Crack", "Fray", "Uneven"}


def _largest_defect(folder: Path) -> Path:
    """The photo whose mask marks the most defect pixels: the least ambiguous case."""
    return max(
        sorted(folder.glob("*.jpg")),
        key=lambda path: np.count_nonzero(cv2.imread(str(path.with_suffix(".png")), 0) >= 128),
    )
