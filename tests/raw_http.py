"""One HTTP exchange over a raw socket, for what an HTTP client library hides."""

from __future__ import annotations

import http.client
import select
import socket
from collections.abc import Iterable

from harness.server import Server


def raw_exchange(
    server: Server, head: bytes, chunks: Iterable[bytes] = (), timeout: float = 20.0
) -> tuple[http.client.HTTPResponse, bytes, int]:
    """Send `head`, then `chunks` until the server answers; returns answer, body, bytes sent.

    A raw socket shows what httpx hides: whether the server answers before the body ends.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(head)
        sent = 0
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break  # the server has answered
            connection.sendall(chunk)
            sent += len(chunk)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response, response.read(), sent
