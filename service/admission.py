"""Which /segment requests may work now: a bounded queue, then a budget of pixels.

The queue refuses a request at once (503 + Retry-After) when too many wait already, so
an overloaded service answers fast instead of piling up work. Admitted requests then
share a budget of pixels, because memory grows with the pixels of the images in work,
not with the number of requests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CancelScope, Condition
from starlette.exceptions import HTTPException

from service.telemetry import Metrics


class BoundedQueue:
    """Admits up to `limit` requests at once and refuses the rest with 503 + Retry-After."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.metrics = metrics
        # Requests admitted and not yet answered. Only the event loop touches it,
        # so it needs no lock.
        self.pending = 0

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        if self.pending >= self.limit:
            self.metrics.queue_rejections.inc()
            raise HTTPException(
                503,
                f"The service is busy with {self.pending} images; retry in a second.",
                headers={"Retry-After": "1"},
            )
        self.pending += 1
        self.metrics.inferences_in_flight.inc()
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.inferences_in_flight.dec()


class PixelBudget:
    """Lets requests work while the pixels of the images in work stay within `capacity`.

    A request whose image does not fit waits for others to finish (it already holds a
    queue slot); an image larger than the whole budget runs alone. Requests go in arrival
    order, so a stream of small images cannot starve a large one.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.changed = Condition()
        self.waiting: deque[object] = deque()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        pixels = min(pixels, self.capacity)
        ticket = object()
        async with self.changed:
            self.waiting.append(ticket)
            try:
                while self.waiting[0] is not ticket or self.in_use + pixels > self.capacity:
                    await self.changed.wait()
            finally:  # admitted or cancelled: either way the next in line may go now
                self.waiting.remove(ticket)
                self.changed.notify_all()
            self.in_use += pixels
        try:
            yield
        finally:
            with CancelScope(shield=True):  # the pixels must be returned even on cancellation
                async with self.changed:
                    self.in_use -= pixels
                    self.changed.notify_all()
