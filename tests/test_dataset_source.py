"""The dataset locator: TILE_DATA_DIR, else the per-user cache filled by the download code.

Downloads come from a server on 127.0.0.1 serving a small zip laid out like the public
archive; no test reaches the internet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import dataset as harness_dataset
from training.data_load import load_dataset
from training.dataset_source import (
    DATA_DIR_VARIABLE,
    DatasetError,
    cache_dir,
    fingerprint,
    locate_dataset,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "cache"


@pytest.fixture
def archive_server(dataset_zip: Path) -> Iterator[tuple[str, list[str]]]:
    """The zip's URL on 127.0.0.1, and the list of paths the server was asked for."""
    requests: list[str] = []

    class CountingHandler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = partial(CountingHandler, directory=str(dataset_zip.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{dataset_zip.name}", requests
    server.shutdown()
    server.server_close()


def test_downloads_once_into_the_cache_and_reuses_it(
    archive_server: tuple[str, list[str]], dataset_dir: Path, private_cache: Path
) -> None:
    url, requests = archive_server
    first = locate_dataset(url)
    second = locate_dataset(url)
    assert first == second and first.is_relative_to(private_cache)
    assert len(requests) == 1, "the second call must not download again"
    assert fingerprint(first) == fingerprint(dataset_dir)
    assert sorted(p.name for p in cache_dir().iterdir()) == [first.parent.name]  # no leftovers


def test_runs_at_once_share_one_complete_copy(
    archive_server: tuple[str, list[str]], dataset_dir: Path
) -> None:
    url, _ = archive_server
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(locate_dataset(url))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1
    assert fingerprint(found[0]) == fingerprint(dataset_dir)
    assert len(list(cache_dir().iterdir())) == 1, "temporary copies are cleaned up"


def test_the_environment_variable_wins(
    archive_server: tuple[str, list[str]], dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = archive_server
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(dataset_dir))
    assert locate_dataset(url) == dataset_dir
    assert requests == []


def test_an_unusable_environment_variable_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=f"^{DATA_DIR_VARIABLE} is .*nowhere, which is not"):
        locate_dataset("https://127.0.0.1/unused.zip")


def test_a_failed_download_is_one_sentence_and_caches_nothing(
    archive_server: tuple[str, list[str]],
) -> None:
    url, _ = archive_server
    missing = url.rsplit("/", 1)[0] + "/missing.zip"
    with pytest.raises(DatasetError) as caught:
        locate_dataset(missing)
    message = str(caught.value)
    assert message.startswith(f"could not download {missing}: HTTP 404")
    assert message.endswith(f"set {DATA_DIR_VARIABLE} to a copy of the dataset.")
    assert not cache_dir().exists() or not any(cache_dir().iterdir())


def test_data_load_refuses_content_with_another_fingerprint(
    tmp_path: Path, dataset_dir: Path
) -> None:
    expected = fingerprint(dataset_dir)
    next(dataset_dir.glob("MT_Crack/Imgs/*.png")).write_bytes(b"edited")
    with pytest.raises(DatasetError) as caught:
        load_dataset(
            str(dataset_dir),
            tmp_path / "raw",
            tmp_path / "manifest.csv",
            128,
            expected_fingerprint=expected,
        )
    assert f"not the {expected} of params.yaml's data.fingerprint" in str(caught.value)
    assert "dvc exp run -S data.fingerprint=" in str(caught.value)
    assert not (tmp_path / "raw").exists()


def test_the_harness_refuses_an_incomplete_copy(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(dataset_dir))
    assert harness_dataset.tile_dataset() == dataset_dir
    for path in (dataset_dir / "MT_Fray" / "Imgs").iterdir():
        path.unlink()
    (dataset_dir / "MT_Fray" / "Imgs").rmdir()
    with pytest.raises(DatasetError, match="lacks MT_Fray/Imgs; point TILE_DATA_DIR"):
        harness_dataset.tile_dataset()
