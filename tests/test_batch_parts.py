"""The batch command's parts, in process: which photos an input names and what their
pictures are called, the --out folder's recovery after a kill, the progress reporter."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from batch.output import OutputError, OutputFolder
from batch.photos import InputError, PhotoError, find_photos, is_uri, read_photo
from batch.progress import Progress
from batch.scoring import Outcome

RUN = {"input": "tiles", "model_sha256": "0" * 64, "labels": False, "overlay": False}


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_a_folder_is_searched_for_images_and_leaves_out_the_results(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    touch(tiles / "b" / "x.JPG", tiles / "a.png", tiles / "a.jpg", tiles / "notes.txt")
    touch(tiles / "out" / "masks" / "a.jpg.png")  # results written inside the input
    photos = find_photos(str(tiles), tiles / "out")
    assert [(p.photo, p.name) for p in photos] == [
        (f"{tiles}/a.jpg", "a.jpg"),
        (f"{tiles}/a.png", "a.png"),
        (f"{tiles}/b/x.JPG", "b/x.JPG"),
    ]


def test_a_glob_names_photos_from_the_deepest_common_folder(tmp_path: Path) -> None:
    touch(tmp_path / "t" / "MT_A" / "Imgs" / "1.jpg", tmp_path / "t" / "MT_B" / "Imgs" / "2.jpg")
    photos = find_photos(f"{tmp_path}/t/*/Imgs/*.jpg", tmp_path / "out")
    assert [p.name for p in photos] == ["MT_A/Imgs/1.jpg", "MT_B/Imgs/2.jpg"]
    with pytest.raises(InputError, match="matches no files"):
        find_photos(f"{tmp_path}/t/*.bmp", tmp_path / "out")


def test_a_list_is_read_from_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "tiles" / "a.jpg", tmp_path / "tiles" / "sub" / "b.jpg")
    listing = tmp_path / "tiles" / "list.txt"
    listing.write_text("a.jpg\n\n./a.jpg\nsub/b.jpg\nmissing.jpg\n")
    monkeypatch.chdir(tmp_path)  # elsewhere than the list
    photos = find_photos(str(listing), tmp_path / "out")
    assert [(p.photo, p.name) for p in photos] == [
        ("a.jpg", "a.jpg"),  # given twice, scored once
        ("sub/b.jpg", "sub/b.jpg"),
        ("missing.jpg", "missing.jpg"),  # a line with its error, not a refused run
    ]
    with pytest.raises(PhotoError, match="could not be read: No such file"):
        read_photo(photos[2].source, 100)


def test_a_photo_past_the_byte_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x" * 11)
    assert read_photo(str(tmp_path / "a.jpg"), 11) == b"x" * 11
    with pytest.raises(PhotoError, match="larger than the limit of 10 bytes"):
        read_photo(str(tmp_path / "a.jpg"), 10)


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        *[("s3://bucket/tiles", True), ("gs://b/t", True), ("file:///tmp/t", True)],
        *[("tiles/a.jpg", False), ("C://tiles", False), ("/tmp/a://b", False)],
    ],
)
def test_object_store_locations_are_told_from_paths(text: str, uri: bool) -> None:
    assert is_uri(text) is uri


def line(photo: str) -> Outcome:
    return Outcome(
        {"photo": photo, "error": None, "files": {"mask": f"masks/{photo}.png"}}, {"mask": b"png"}
    )


def test_the_folder_drops_what_a_kill_cut_short(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "out")
    assert folder.open(RUN) == {}
    folder.record(line("b.jpg"))
    folder.record(line("a.jpg"))
    folder.close()
    with (tmp_path / "out" / "results.jsonl").open("ab") as results:
        results.write(b'not json\n{"photo": "c.j')  # a damaged line, then a cut one
    (tmp_path / "out" / ".partial").mkdir()
    (tmp_path / "out" / ".partial" / "half").write_bytes(b"\x89PN")

    folder = OutputFolder(tmp_path / "out")
    assert sorted(folder.open(RUN)) == ["a.jpg", "b.jpg"]
    assert not (tmp_path / "out" / ".partial" / "half").exists()
    assert [entry["photo"] for entry in folder.finish()] == ["a.jpg", "b.jpg"]
    folder.close()
    text = (tmp_path / "out" / "results.jsonl").read_text()
    assert [json.loads(entry)["photo"] for entry in text.splitlines()] == ["a.jpg", "b.jpg"]
    assert (tmp_path / "out" / "masks" / "a.jpg.png").read_bytes() == b"png"
    assert not (tmp_path / "out" / ".partial").exists()


def test_one_run_at_a_time_and_with_its_own_settings(tmp_path: Path) -> None:
    first = OutputFolder(tmp_path / "out")
    first.open(RUN)
    with pytest.raises(OutputError, match="Another run is writing"):
        OutputFolder(tmp_path / "out").open(RUN)
    first.close()
    with pytest.raises(OutputError, match=r"other settings \(model_sha256\)"):
        OutputFolder(tmp_path / "out").open({**RUN, "model_sha256": "1" * 64})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_logs_every_n_photos_off_a_terminal() -> None:
    stream, now = io.StringIO(), [0.0]
    progress = Progress(5, stream, log_every=2, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 0.5
        progress.advance()
    progress.close()
    assert stream.getvalue().splitlines() == [
        "2/5 photos, 2.0 photos/s, 0:02 left",
        "4/5 photos, 2.0 photos/s, 0:00 left",
        "5/5 photos, 2.0 photos/s, 0:00 left",
    ]


def test_progress_draws_a_bar_on_a_terminal() -> None:
    stream, now = Terminal(), [0.0]
    progress = Progress(100, stream, log_every=1, clock=lambda: now[0])
    for _ in range(50):
        now[0] += 0.25  # past the redraw interval: every photo redraws
        progress.advance()
    progress.close()
    last = stream.getvalue().split("\r")[-1]
    assert last == "[############............]  50% 50/100 photos, 4.0 photos/s, 0:12 left\n"
