"""What the server refuses before the app sees a request, over raw sockets to a real
server: oversized headers (431), malformed HTTP (400) and multipart bodies of too many
parts or two images (400), each with the JSON error every other answer carries."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time

import httpx
import pytest

from harness.server import Server
from service.server import MAX_HEAD_BYTES
from service.uploads import MAX_PARTS
from tests.raw_http import raw_exchange

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # a real server

HEALTH_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def error_of(
    response: http.client.HTTPResponse, body: bytes, status: int, closes: bool = True
) -> str:
    """The error sentence; the server's own refusals (`closes`) also end the connection."""
    assert response.status == status, body
    assert response.getheader("content-type") == "application/json"
    assert (response.getheader("connection") == "close") == closes
    return json.loads(body)["error"]


def head_of_size(size: int) -> bytes:
    """A GET /health whose request line and headers are exactly `size` bytes."""
    padding = size - len(HEALTH_HEAD) - len(b"X-Padding: \r\n\r\n")
    return HEALTH_HEAD + b"X-Padding: " + b"a" * padding + b"\r\n\r\n"


def multipart(fields: list[tuple[str, bytes]], boundary: bytes = b"b0undary") -> bytes:
    """A POST /segment of `fields` as multipart/form-data, head and body."""
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="t.jpg"\r\n\r\n%s\r\n'
        % (boundary, name.encode(), value)
        for name, value in fields
    )
    body += b"--%s--\r\n" % boundary
    head = (
        b"POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n"
        % (boundary, len(body))
    )
    return head + body


def test_an_8_mb_header_is_refused_at_the_limit(server: Server, client: httpx.Client) -> None:
    header = b"X-Big: " + b"a" * 8_000_000
    sent = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as connection:
        connection.sendall(HEALTH_HEAD)
        try:
            while sent < len(header) and not select.select([connection], [], [], 0)[0]:
                sent += connection.send(header[sent : sent + 65536])
        except OSError:  # the server closed while the client was still sending: as meant
            pass
        response = http.client.HTTPResponse(connection)
        response.begin()
        body = response.read()
    seconds = time.perf_counter() - started
    message = error_of(response, body, 431)
    assert (
        message
        == f"The request line and headers are larger than the limit of {MAX_HEAD_BYTES} bytes."
    )
    # Refused at the limit: loopback buffers take a few MB, never the whole header.
    assert sent < len(header) and seconds < 2.0
    assert client.get("/health").status_code == 200  # and the server keeps serving


def test_headers_up_to_the_limit_are_served(server: Server) -> None:
    response, body, _ = raw_exchange(server, head_of_size(MAX_HEAD_BYTES))
    assert response.status == 200 and json.loads(body) == {"status": "ok"}
    response, body, _ = raw_exchange(server, head_of_size(MAX_HEAD_BYTES + 1))
    error_of(response, body, 431)


def test_the_limit_counts_each_request_head_not_bodies(server: Server, tile_jpeg: bytes) -> None:
    assert len(tile_jpeg) > MAX_HEAD_BYTES  # a body larger than the limit
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(3):  # keep-alive: every head starts a new count
            padding = "a" * (MAX_HEAD_BYTES - 300)
            headers = {"Content-Type": "image/jpeg", "X-Padding": padding}
            connection.request("POST", "/segment", tile_jpeg, headers)
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read().startswith(b"\x89PNG")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "request_bytes",
    [b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"],
    ids=["garbage request line", "header without colon"],
)
def test_malformed_http_gets_a_json_400(
    server: Server, client: httpx.Client, request_bytes: bytes
) -> None:
    response, body, _ = raw_exchange(server, request_bytes)
    assert "not valid HTTP/1.1" in error_of(response, body, 400)
    assert client.get("/health").status_code == 200


def test_a_form_of_many_parts_is_refused(server: Server, tile_jpeg: bytes) -> None:
    fields = [("image", tile_jpeg)] + [(f"note{i}", b"x") for i in range(19)]
    response, body, _ = raw_exchange(server, multipart(fields))
    message = error_of(response, body, 400, closes=False)
    assert message == (
        f"The multipart body has more than {MAX_PARTS} parts; send the photo as the one "
        "field 'image'."
    )


def test_a_form_of_a_few_parts_is_served(server: Server, tile_jpeg: bytes) -> None:
    fields = [(f"note{i}", b"x") for i in range(MAX_PARTS - 1)] + [("image", tile_jpeg)]
    response, body, _ = raw_exchange(server, multipart(fields))
    assert response.status == 200 and body.startswith(b"\x89PNG")


def test_two_images_are_refused(server: Server, tile_jpeg: bytes) -> None:
    response, body, _ = raw_exchange(server, multipart([("image", tile_jpeg)] * 2))
    message = error_of(response, body, 400, closes=False)
    assert message == (
        "The multipart body has more than one field named 'image'; send one photo per request."
    )
