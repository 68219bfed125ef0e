"""The local engine: one process, the network kept busy.

One thread runs the network, photo after photo, as the API's single inference slot does;
around it a few threads read and decode the next photos, and a few others threshold,
encode and write the finished ones. OpenCV and onnxruntime release the GIL, so on two
cores reading and writing overlap the network instead of adding to its time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from batch.output import OutputFolder
from batch.photos import Photo, PhotoError, read_photo
from batch.progress import Progress
from batch.scoring import Decoded, Outcome, Scorer

if TYPE_CHECKING:
    from service.segmenter import Prediction

READERS = 2
WRITERS = 2
# Photos decoded ahead of the network, and photos waiting to be written: enough to keep the
# network busy, few enough to bound memory (a photo at the 25-megapixel limit takes
# about 0.9 GB to segment).
AHEAD = 4

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_local(
    photos: list[Photo], scorer: Scorer, folder: OutputFolder, progress: Progress, max_bytes: int
) -> None:
    """Score `photos` into `folder`; raises OSError when --out cannot be written."""

    def load(photo: Photo) -> Decoded | Outcome:
        try:
            data = read_photo(photo.source, max_bytes)
        except PhotoError as error:
            return scorer.failure(photo, str(error))
        return scorer.decode(photo, data)

    def record(outcome: Outcome) -> None:
        folder.record(outcome)
        progress.advance()

    def finish(decoded: Decoded, prediction: Prediction) -> None:
        record(scorer.finish(decoded, prediction))

    with (
        ThreadPoolExecutor(READERS, "batch-read") as readers,
        ThreadPoolExecutor(WRITERS, "batch-write") as writers,
    ):
        writes: deque[Future[None]] = deque()
        for loaded in _in_order(readers, load, photos, AHEAD):
            if isinstance(loaded, Outcome):
                writes.append(writers.submit(record, loaded))
            else:
                prediction = scorer.segmenter.predict(loaded.gray)
                writes.append(writers.submit(finish, loaded, prediction))
            while len(writes) > AHEAD or (writes and writes[0].done()):
                writes.popleft().result()  # raises what the writer raised
        while writes:
            writes.popleft().result()


def _in_order(
    pool: ThreadPoolExecutor, function: Callable[[Item], Result], items: Iterable[Item], ahead: int
) -> Iterator[Result]:
    """`function` of each item, in order, computed on `pool` up to `ahead` items early."""
    pending: deque[Future[Result]] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
