"""data_load on real dataset files: from a folder, a zip and a local HTTP server, and refusals."""

from __future__ import annotations

import csv
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness import REPO_ROOT
from training.data_load import MANIFEST_HEADER, DatasetError, ManifestRow, load_dataset, main
from training.dataset_source import DATA_DIR_VARIABLE, fingerprint

CLASSES = ("Blowhole", "Break", "Crack", "Fray", "Free", "Uneven")
GITHUB_TOP_FOLDER = "Magnetic-tile-defect-datasets.-master"
THRESHOLD = 128


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Archives unpack into the test's own cache, and no TILE_DATA_DIR overrides the source."""
    monkeypatch.delenv(DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(source: Path | str, root: Path, threshold: int = THRESHOLD, **kwargs) -> list[ManifestRow]:
    """data_load from `source` into root/data/raw and root/data/manifest.csv."""
    return load_dataset(
        str(source), root / "data/raw", root / "data/manifest.csv", threshold, **kwargs
    )


def output_files(root: Path) -> dict[str, bytes]:
    """Every file under root/data, by relative path."""
    data = root / "data"
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}


def assert_refused(source: Path | str, root: Path, *named: str, **kwargs) -> str:
    """data_load refuses `source` with a one-sentence message naming `named`, writing nothing."""
    with pytest.raises(DatasetError) as caught:
        run(source, root, **kwargs)
    message = str(caught.value)
    for text in named:
        assert text in message
    assert message.endswith(".") and "\n" not in message and ". " not in message
    # Neither output nor staging folder is left behind.
    assert not (root / "data").exists() or not any((root / "data").iterdir())
    return message


def first_image(dataset: Path, class_name: str) -> Path:
    return sorted((dataset / f"MT_{class_name}" / "Imgs").glob("*.jpg"))[0]


def test_folder_zip_and_url_give_identical_output(
    tmp_path: Path,
    dataset_dir: Path,
    dataset_zip: Path,
    make_zip: Callable[..., Path],
    http_serve: Callable[[Path], str],
) -> None:
    nested = tmp_path / "nested"
    shutil.copytree(dataset_dir, nested / GITHUB_TOP_FOLDER)
    sources = {
        "folder": dataset_dir,
        "nested folder": nested,
        "flat zip": make_zip(dataset_dir, tmp_path / "flat.zip"),
        "github zip": dataset_zip,
        "url": f"{http_serve(dataset_zip.parent)}/{dataset_zip.name}",
    }
    outputs = {}
    for kind, source in sources.items():
        run(source, tmp_path / "out" / kind)
        outputs[kind] = output_files(tmp_path / "out" / kind)
    for kind, files in outputs.items():
        assert files == outputs["folder"], kind

    originals = sorted(dataset_dir.glob("MT_*/Imgs/*.jpg"))
    assert len(originals) == 3 * len(CLASSES)
    expected = {
        f"raw/{p.parent.parent.name}/{p.stem}.{ext}" for p in originals for ext in ("jpg", "png")
    }
    assert set(outputs["folder"]) == {"manifest.csv"} | expected


def test_output_images_masks_and_manifest(tmp_path: Path, dataset_dir: Path) -> None:
    rows = run(dataset_dir, tmp_path)

    raw = tmp_path / "data/raw"
    with (tmp_path / "data/manifest.csv").open(newline="") as file:
        table = list(csv.reader(file))
    assert (
        tuple(table[0]) == MANIFEST_HEADER == ("image", "class", "width", "height", "defect_pixels")
    )
    assert [row[0] for row in table[1:]] == sorted(row[0] for row in table[1:])
    assert [[str(value) for value in astuple(row)] for row in rows] == table[1:]
    assert {row.class_name for row in rows} == set(CLASSES)

    for row in rows:
        class_dir, name = row.image.split("/")
        original = dataset_dir / class_dir / "Imgs" / f"{name}.jpg"
        assert row.class_name == class_dir.removeprefix("MT_")
        assert (raw / f"{row.image}.jpg").read_bytes() == original.read_bytes()
        image = cv2.imread(str(original), cv2.IMREAD_GRAYSCALE)
        assert (row.height, row.width) == image.shape
        mask = cv2.imread(str(raw / f"{row.image}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == image.shape  # one channel, 8 bits
        assert set(np.unique(mask)) <= {0, 255}
        source_mask = cv2.imread(str(original.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(mask, np.where(source_mask >= THRESHOLD, 255, 0))
        assert row.defect_pixels == np.count_nonzero(mask)
        assert (row.defect_pixels == 0) == (row.class_name == "Free")


@pytest.mark.parametrize("threshold", [1, 128, 255])
def test_mask_is_binarised_at_threshold(tmp_path: Path, dataset_dir: Path, threshold: int) -> None:
    image = first_image(dataset_dir, "Crack")
    height, width = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
    ramp = (np.arange(height * width) % 256).astype(np.uint8).reshape(height, width)
    cv2.imwrite(str(image.with_suffix(".png")), ramp)

    rows = run(dataset_dir, tmp_path, threshold)

    mask = cv2.imread(str(tmp_path / f"data/raw/MT_Crack/{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask, np.where(ramp >= threshold, 255, 0))
    row = next(row for row in rows if row.image == f"MT_Crack/{image.stem}")
    assert row.defect_pixels == np.count_nonzero(ramp >= threshold)


def test_empty_defect_mask_is_kept_with_a_warning(
    tmp_path: Path, dataset_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = first_image(dataset_dir, "Fray")
    mask = cv2.imread(str(image.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(image.with_suffix(".png")), np.zeros_like(mask))

    with caplog.at_level(logging.WARNING, logger="training.data_load"):
        rows = run(dataset_dir, tmp_path)

    assert next(row for row in rows if row.image == f"MT_Fray/{image.stem}").defect_pixels == 0
    # Defect-free tiles (MT_Free) have empty masks by definition and are not counted.
    assert [r.getMessage() for r in caplog.records] == [
        f"1 masks in defect classes are empty: MT_Fray/{image.stem}"
    ]


# Refusals: each names the offending file and leaves no output behind.


def test_refuses_random_bytes_as_zip(tmp_path: Path) -> None:
    archive = tmp_path / "random.zip"
    archive.write_bytes(random.Random(0).randbytes(4096))
    assert_refused(archive, tmp_path / "out", str(archive), "not a readable zip")


def test_refuses_truncated_zip(tmp_path: Path, dataset_zip: Path) -> None:
    archive = tmp_path / "half.zip"
    data = dataset_zip.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert_refused(archive, tmp_path / "out", str(archive), "not a readable zip")


def test_refuses_zip_without_class_folders(
    tmp_path: Path, make_zip: Callable[..., Path], shared_data_dir: Path
) -> None:
    folder = tmp_path / "other" / "Imgs"
    folder.mkdir(parents=True)
    shutil.copyfile(first_image(shared_data_dir, "Crack"), folder / "tile.jpg")
    archive = make_zip(folder.parent, tmp_path / "other.zip", "top")
    assert_refused(archive, tmp_path / "out", str(archive), "no MT_* folders")


def test_refuses_folder_without_class_folders(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    (folder / "sub" / "Imgs").mkdir(parents=True)
    assert_refused(folder, tmp_path / "out", str(folder), "no MT_* folders")


def test_refuses_class_folders_in_several_subfolders(tmp_path: Path, dataset_dir: Path) -> None:
    shutil.copytree(dataset_dir, tmp_path / "twice" / "a")
    shutil.copytree(dataset_dir, tmp_path / "twice" / "b")
    assert_refused(tmp_path / "twice", tmp_path / "out", "several subfolders (a, b)")


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "zip"])
def test_refuses_image_without_mask(
    tmp_path: Path, dataset_dir: Path, make_zip: Callable[..., Path], packed: bool
) -> None:
    image = first_image(dataset_dir, "Blowhole")
    image.with_suffix(".png").unlink()
    if packed:
        archive = make_zip(dataset_dir, tmp_path / "master.zip", GITHUB_TOP_FOLDER)
        member = f"{GITHUB_TOP_FOLDER}/MT_Blowhole/Imgs/{image.name}"
        assert_refused(archive, tmp_path / "out", f"image {member} in {archive} has no mask")
    else:
        assert_refused(dataset_dir, tmp_path / "out", f"image {image} has no mask")


def test_refuses_mask_without_image(tmp_path: Path, dataset_dir: Path) -> None:
    image = first_image(dataset_dir, "Uneven")
    image.unlink()
    assert_refused(dataset_dir, tmp_path / "out", f"mask {image.with_suffix('.png')} has no image")


def test_refuses_class_folder_without_images(tmp_path: Path, dataset_dir: Path) -> None:
    (dataset_dir / "MT_Extra" / "Imgs").mkdir(parents=True)
    assert_refused(dataset_dir, tmp_path / "out", f"{dataset_dir / 'MT_Extra'} holds no .jpg")


def test_refuses_mask_of_another_size(tmp_path: Path, dataset_dir: Path) -> None:
    mask_path = first_image(dataset_dir, "Break").with_suffix(".png")
    height, width = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE).shape
    cv2.imwrite(str(mask_path), np.zeros((height + 1, width), np.uint8))
    assert_refused(
        dataset_dir, tmp_path / "out", f"mask {mask_path} is {width}x{height + 1} px but its image"
    )


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_refuses_corrupt_image_or_mask(tmp_path: Path, dataset_dir: Path, suffix: str) -> None:
    path = first_image(dataset_dir, "Free").with_suffix(suffix)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(dataset_dir, tmp_path / "out", f"{path} is not a readable image")


def test_refuses_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.zip"
    assert_refused(missing, tmp_path / "out", f"data.source {missing} does not exist")


def test_refuses_unsupported_url_scheme(tmp_path: Path) -> None:
    url = "ftp://127.0.0.1/master.zip"
    assert_refused(url, tmp_path / "out", url, "unsupported URL scheme 'ftp'")


def test_refuses_url_not_found(
    tmp_path: Path, dataset_zip: Path, http_serve: Callable[[Path], str]
) -> None:
    url = f"{http_serve(dataset_zip.parent)}/missing.zip"
    assert_refused(url, tmp_path / "out", f"could not download {url}: HTTP 404")


def test_refuses_url_without_server(tmp_path: Path, http_serve: Callable[[Path], str]) -> None:
    # http_serve only for its no_proxy setting.
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/master.zip"
    assert_refused(url, tmp_path / "out", f"could not download {url}: ", "refused", "TILE_DATA_DIR")


def test_refuses_url_that_times_out(tmp_path: Path, http_serve: Callable[[Path], str]) -> None:
    # http_serve only for its no_proxy setting.
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/master.zip"
        assert_refused(
            url, tmp_path / "out", f"could not download {url}: ", "timed out", timeout=0.3
        )


def test_refuses_bad_threshold(tmp_path: Path, dataset_dir: Path) -> None:
    assert_refused(dataset_dir, tmp_path / "out", "data.mask_threshold is 0", threshold=0)


# Replacing a previous output: a failed run keeps it untouched, a good run replaces it whole.


def test_failed_run_keeps_previous_output(tmp_path: Path, dataset_dir: Path) -> None:
    run(dataset_dir, tmp_path)
    before = output_files(tmp_path)
    first_image(dataset_dir, "Crack").with_suffix(".png").unlink()

    with pytest.raises(DatasetError):
        run(dataset_dir, tmp_path)

    assert output_files(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["manifest.csv", "raw"]


def test_good_run_replaces_previous_output(
    tmp_path: Path, dataset_dir: Path, copy_dataset: Callable[..., Path]
) -> None:
    run(dataset_dir, tmp_path / "old")
    (tmp_path / "old/data/raw/MT_Free/stale.png").write_bytes(b"stale")
    smaller = copy_dataset(tmp_path / "smaller", per_class=2)

    run(smaller, tmp_path / "old")
    run(smaller, tmp_path / "fresh")

    assert output_files(tmp_path / "old") == output_files(tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "old/data").iterdir()) == ["manifest.csv", "raw"]


# The command line.


def test_main_writes_the_outputs(
    tmp_path: Path, dataset_dir: Path, dataset_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: {dataset_zip}\n  mask_threshold: 128\n"
        f"  fingerprint: {fingerprint(dataset_dir)}\n"
    )
    monkeypatch.chdir(tmp_path)
    main()
    assert len((tmp_path / "data/manifest.csv").read_text().splitlines()) == 1 + 3 * len(CLASSES)
    assert len(list((tmp_path / "data/raw").glob("MT_*/*.png"))) == 3 * len(CLASSES)


def test_main_reports_error_and_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: {missing}\n  mask_threshold: 128\n  fingerprint: 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "training.data_load"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},  # without TILE_DATA_DIR (fixture)
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: data.source {missing} does not exist;")
    assert len(result.stderr.splitlines()) == 1  # no traceback
    assert not (tmp_path / "data/raw").exists() and not (tmp_path / "data/manifest.csv").exists()
