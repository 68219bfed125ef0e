"""data_split: stratified, seeded, complete and disjoint; clear errors without a manifest."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from training.data_load import load_dataset
from training.data_split import (
    SplitError,
    main,
    read_manifest,
    split_dataset,
    stratified_split,
)
from training.photos import tile_groups

# The public dataset's class sizes.
CLASS_SIZES = {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Free": 952, "Uneven": 103}
SPLITS = ("train", "valid", "test")


def write_manifest(path: Path, class_sizes: dict[str, int]) -> Path:
    """A manifest like data_load's, with made-up sizes and defect pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image", "class", "width", "height", "defect_pixels"])
        for name, size in class_sizes.items():
            for i in range(size):
                writer.writerow(
                    [f"MT_{name}/img_{i:04d}", name, 300, 200, 0 if name == "Free" else 50]
                )
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "data/manifest.csv", CLASS_SIZES)


def class_counts(ids: list[str]) -> Counter[str]:
    return Counter(image.split("/")[0].removeprefix("MT_") for image in ids)


def test_every_class_is_split_in_proportion(tmp_path: Path, manifest: Path) -> None:
    split = split_dataset(manifest, tmp_path / "split.json", 42, 0.2, 0.15)

    for name, size in CLASS_SIZES.items():
        n_test = round(size * 0.2)
        n_valid = round((size - n_test) * 0.15)
        assert class_counts(split["test"])[name] == n_test >= 1
        assert class_counts(split["valid"])[name] == n_valid >= 1
        assert class_counts(split["train"])[name] == size - n_test - n_valid >= 1
    assert [len(split[name]) for name in SPLITS] == [915, 161, 268]


def test_split_is_disjoint_complete_and_sorted(tmp_path: Path, manifest: Path) -> None:
    split_dataset(manifest, tmp_path / "split.json", 42, 0.2, 0.15)

    written = json.loads((tmp_path / "split.json").read_text())
    assert list(written) == ["seed", *SPLITS] and written["seed"] == 42
    ids = [image for name in SPLITS for image in written[name]]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(read_manifest(manifest))
    for name in SPLITS:
        assert written[name] == sorted(written[name])


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path, manifest: Path) -> None:
    split_dataset(manifest, tmp_path / "a.json", 7, 0.2, 0.15)
    split_dataset(manifest, tmp_path / "b.json", 7, 0.2, 0.15)
    split_dataset(manifest, tmp_path / "c.json", 8, 0.2, 0.15)

    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    a, c = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ac")
    for name in SPLITS:
        assert a[name] != c[name]
        assert class_counts(a[name]) == class_counts(c[name])


def test_other_classes_do_not_move_a_class(manifest: Path) -> None:
    images = read_manifest(manifest)
    crack_only = {image: name for image, name in images.items() if name == "Crack"}

    alone = stratified_split(crack_only, 42, 0.2, 0.15)
    together = stratified_split(images, 42, 0.2, 0.15)

    for name in SPLITS:
        assert alone[name] == [i for i in together[name] if i.startswith("MT_Crack/")]


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.9])
def test_classes_of_three_fill_every_split(fraction: float) -> None:
    images = {f"MT_Tiny/{i}": "Tiny" for i in range(3)} | {f"MT_Pair/{i}": "Pair" for i in range(2)}

    split = stratified_split(images, 0, fraction, fraction)

    assert [class_counts(split[name])["Tiny"] for name in SPLITS] == [1, 1, 1]
    assert [class_counts(split[name])["Pair"] for name in SPLITS] == [2, 0, 0]


@pytest.mark.parametrize("fractions", [(1.0, 0.15), (0.2, -0.1)])
def test_refuses_fractions_out_of_range(fractions: tuple[float, float]) -> None:
    with pytest.raises(SplitError, match=r"split\.(test|valid)_fraction is"):
        stratified_split({"MT_A/a": "A"}, 0, *fractions)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), ("", "is empty"), ("image,class\n", "lists no images")],
    ids=["missing", "empty", "header only"],
)
def test_refuses_missing_or_empty_manifest(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    manifest = tmp_path / "data/manifest.csv"
    if content is not None:
        manifest.parent.mkdir()
        manifest.write_text(content)

    with pytest.raises(SplitError) as caught:
        split_dataset(manifest, tmp_path / "data/split.json", 42, 0.2, 0.15)

    assert (
        str(caught.value) == f"{manifest} {problem}; run data_load first (`dvc repro data_load`)."
    )
    assert not (tmp_path / "data/split.json").exists()


def test_main_reports_missing_manifest_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text(
        "split:\n  seed: 42\n  test_fraction: 0.2\n  valid_fraction: 0.15\n  group_frames: 0\n"
    )
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "error: data/manifest.csv does not exist; run data_load first (`dvc repro data_load`).\n"
    )


def test_main_splits_data_load_output(
    tmp_path: Path, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "params.yaml").write_text(
        "split:\n  seed: 42\n  test_fraction: 0.2\n  valid_fraction: 0.15\n  group_frames: 0\n"
    )
    monkeypatch.chdir(tmp_path)
    load_dataset(str(dataset_dir), Path("data/raw"), Path("data/manifest.csv"), 128)

    main()

    split = json.loads(Path("data/split.json").read_text())
    for name in SPLITS:  # 3 images per class: one in each split
        assert class_counts(split[name]) == dict.fromkeys(CLASS_SIZES, 1)


def burst_photos(tiles_per_class: dict[str, int]) -> dict[str, str]:
    """Photos named as the dataset's: each tile shot under six exposures, frames 20 apart,
    tiles 5000 frames apart."""
    return {
        f"MT_{name}/exp{exposure}_num_{5000 * tile + 20 * exposure}": name
        for name, tiles in tiles_per_class.items()
        for tile in range(1, tiles + 1)
        for exposure in range(1, 7)
    }


def test_grouped_split_keeps_every_tiles_photos_in_one_split() -> None:
    photos = burst_photos({"Fray": 6, "Crack": 10, "Free": 80})

    split = stratified_split(photos, 42, 0.2, 0.15, group_frames=100)

    splits_of_tile: dict[tuple[str, int], set[str]] = {}
    for name in SPLITS:
        for image in split[name]:
            splits_of_tile.setdefault(_tile_of(image), set()).add(name)
    assert sum(len(split[name]) for name in SPLITS) == len(photos)
    assert len(splits_of_tile) == 96
    assert all(len(names) == 1 for names in splits_of_tile.values())
    for name in ("Fray", "Crack", "Free"):
        assert all(class_counts(split[subset])[name] >= 6 for subset in SPLITS)
    assert class_counts(split["test"])["Free"] == 96  # 16 of the 80 tiles: 20%


def _tile_of(image: str) -> tuple[str, int]:
    folder, name = image.split("/")
    return folder, int(name.rsplit("_", 1)[1]) // 5000


def test_photo_split_spreads_a_tiles_exposures() -> None:
    photos = burst_photos({"Free": 80})

    split = stratified_split(photos, 42, 0.2, 0.15, group_frames=0)

    test_tiles = {_tile_of(image) for image in split["test"]}
    train_tiles = {_tile_of(image) for image in split["train"]}
    assert len(split["test"]) == 96 and test_tiles & train_tiles


def test_tile_groups_chain_nearby_frames_and_leave_unnumbered_photos_alone() -> None:
    photos = [
        "MT_A/exp1_num_100",
        "MT_A/exp2_num_180",
        "MT_A/exp3_num_260",
        "MT_A/exp1_num_900",
        "MT_A/scan",
    ]

    assert tile_groups(photos, 100) == [
        ["MT_A/scan"],
        ["MT_A/exp1_num_100", "MT_A/exp2_num_180", "MT_A/exp3_num_260"],
        ["MT_A/exp1_num_900"],
    ]
    assert tile_groups(photos, 0) == [[photo] for photo in sorted(photos)]
