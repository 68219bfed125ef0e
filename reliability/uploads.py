"""HTTP requests that carry an image to POST /segment, well-formed and malformed.

Each `Upload` knows what a correct server must do with it: ACCEPT (a 2xx with a mask of
the image's size), REFUSE (a 4xx JSON error), or EITHER (damaged input: any answer that
keeps the contract).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.multipart import BOUNDARY, FORM_TYPE, IMAGE_PART, TEXT_PART, form
from service.uploads import MAX_PARTS


class Expect(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    EITHER = "either"


@dataclass(frozen=True)
class Upload:
    description: str
    body: bytes
    payload: bytes  # the image bytes inside the body, to check a 2xx answer against
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    answer: str = "mask"  # mask, json or overlay: what a 2xx must contain
    expect: Expect = Expect.EITHER
    chunked: bool = False  # sent without Content-Length, in pieces


def combine(*expectations: Expect) -> Expect:
    """REFUSE if any part must be refused; ACCEPT only if every part must be accepted."""
    if Expect.REFUSE in expectations:
        return Expect.REFUSE
    return Expect.ACCEPT if all(e is Expect.ACCEPT for e in expectations) else Expect.EITHER


# Raw-body Content-Types, with whether the service must take the body as an image.
RAW_CONTENT_TYPES: dict[str | None, Expect] = {
    "image/jpeg": Expect.ACCEPT,
    "image/png": Expect.ACCEPT,
    "image/tiff": Expect.ACCEPT,
    "image/bmp": Expect.ACCEPT,
    "image/x-anything": Expect.ACCEPT,
    "application/octet-stream": Expect.ACCEPT,
    "IMAGE/PNG": Expect.ACCEPT,  # media types are case-insensitive (RFC 9110)
    "Image/Jpeg; charset=binary": Expect.ACCEPT,
    None: Expect.REFUSE,  # no Content-Type at all
    "": Expect.REFUSE,
    "text/plain": Expect.REFUSE,
    "application/json": Expect.REFUSE,
    "application/x-www-form-urlencoded": Expect.REFUSE,
    "multipart/mixed; boundary=x": Expect.REFUSE,
    "image": Expect.REFUSE,
    ";;;": Expect.REFUSE,
    "multipart/form-data": Expect.REFUSE,  # no boundary
    "multipart/form-data; boundary=": Expect.REFUSE,
}

# Answer formats: query string, Accept header, the answer a 2xx carries, and expectation.
ANSWER_FORMATS: list[tuple[str, str | None, str, Expect]] = [
    ("", None, "mask", Expect.ACCEPT),
    ("format=mask", None, "mask", Expect.ACCEPT),
    ("format=json", None, "json", Expect.ACCEPT),
    ("format=overlay", None, "overlay", Expect.ACCEPT),
    ("", "application/json", "json", Expect.ACCEPT),
    ("", "image/*;q=0.5, application/json", "json", Expect.ACCEPT),
    ("format=gif", None, "mask", Expect.REFUSE),
    ("", "text/html", "mask", Expect.REFUSE),
    ("", "*/*;q=0", "mask", Expect.REFUSE),
]


def raw(payload: bytes, content_type: str | None, chunked: bool = False) -> Upload:
    headers = {} if content_type is None else {"Content-Type": content_type}
    expect = RAW_CONTENT_TYPES.get(content_type, Expect.EITHER)
    how = "chunked" if chunked else "raw"
    return Upload(
        f"{how} {content_type!r}", payload, payload, headers, expect=expect, chunked=chunked
    )


def _multipart(
    name: str, body: bytes, payload: bytes, expect: Expect, content_type: str = FORM_TYPE
) -> Upload:
    return Upload(f"multipart {name}", body, payload, {"Content-Type": content_type}, expect=expect)


MultipartBuilder = Callable[[bytes, int], Upload]
"""(image payload, a drawn integer for sizes and positions) -> an Upload."""

MULTIPART_VARIANTS: dict[str, MultipartBuilder] = {
    "form": lambda p, n: _multipart("form", form([(IMAGE_PART, p)]), p, Expect.ACCEPT),
    "extra-fields": lambda p, n: _multipart(
        "extra-fields",
        form([(TEXT_PART, b"line-3"), (IMAGE_PART, p), (TEXT_PART, b"x" * (n % 5000))]),
        p,
        Expect.ACCEPT,
    ),
    "quoted-boundary": lambda p, n: _multipart(
        "quoted-boundary",
        form([(IMAGE_PART, p)]),
        p,
        Expect.ACCEPT,
        f'multipart/form-data; boundary="{BOUNDARY}"',
    ),
    "no-part-type": lambda p, n: _multipart(
        "no-part-type",
        form([('Content-Disposition: form-data; name="image"', p)]),
        p,
        Expect.ACCEPT,
    ),
    "image-twice": lambda p, n: _multipart(
        "image-twice", form([(IMAGE_PART, p), (IMAGE_PART, b"second")]), p, Expect.REFUSE
    ),
    "parts-at-the-limit": lambda p, n: _multipart(
        "parts-at-the-limit",
        form([(TEXT_PART, b"x")] * (MAX_PARTS - 1) + [(IMAGE_PART, p)]),
        p,
        Expect.ACCEPT,
    ),
    "too-many-parts": lambda p, n: _multipart(
        "too-many-parts",
        form([(IMAGE_PART, p)] + [(TEXT_PART, b"x")] * (MAX_PARTS + n % 1000)),
        p,
        Expect.REFUSE,
    ),
    "utf8-filename": lambda p, n: _multipart(
        "utf8-filename",
        form([("Content-Disposition: form-data; name=\"image\"; filename*=UTF-8''t%C3%A9.jpg", p)]),
        p,
        Expect.ACCEPT,
    ),
    "wrong-field": lambda p, n: _multipart(
        "wrong-field",
        form([('Content-Disposition: form-data; name="file"; filename="t.jpg"', p)]),
        p,
        Expect.REFUSE,
    ),
    "empty-image": lambda p, n: _multipart(
        "empty-image", form([(IMAGE_PART, b"")]), b"", Expect.REFUSE
    ),
    "no-closing-boundary": lambda p, n: _multipart(
        "no-closing-boundary", form([(IMAGE_PART, p)], closing=False), p, Expect.REFUSE
    ),
    "boundary-mismatch": lambda p, n: _multipart(
        "boundary-mismatch", form([(IMAGE_PART, p)], boundary="other"), p, Expect.REFUSE
    ),
    "no-boundary-param": lambda p, n: _multipart(
        "no-boundary-param", form([(IMAGE_PART, p)]), p, Expect.REFUSE, "multipart/form-data"
    ),
    "empty-boundary-param": lambda p, n: _multipart(
        "empty-boundary-param",
        form([(IMAGE_PART, p)]),
        p,
        Expect.REFUSE,
        "multipart/form-data; boundary=",
    ),
    "lf-only": lambda p, n: _multipart(
        "lf-only", form([(IMAGE_PART, p)]).replace(b"\r\n", b"\n"), p, Expect.EITHER
    ),
    "long-part-header": lambda p, n: _multipart(
        "long-part-header",
        form([(IMAGE_PART + "\r\nX-Pad: " + "a" * (n % 200_000), p)]),
        p,
        Expect.EITHER,
    ),
    "long-boundary": lambda p, n: _multipart(
        "long-boundary",
        form([(IMAGE_PART, p)], boundary="b" * (70 + n % 2000)),
        p,
        Expect.EITHER,
        f"multipart/form-data; boundary={'b' * (70 + n % 2000)}",
    ),
    "truncated": lambda p, n: _multipart(
        "truncated",
        (body := form([(IMAGE_PART, p)]))[: n % max(len(body) - 1, 1)],
        p,
        Expect.EITHER,
    ),
    "garbage-part-header": lambda p, n: _multipart(
        "garbage-part-header",
        form([("this line has no colon\r\n" + IMAGE_PART, p)]),
        p,
        Expect.EITHER,
    ),
    "preamble-and-epilogue": lambda p, n: _multipart(
        "preamble-and-epilogue",
        b"preamble text\r\n" + form([(IMAGE_PART, p)]) + b"epilogue\r\n",
        p,
        Expect.EITHER,
    ),
    "framing-bitflips": lambda p, n: _multipart(
        "framing-bitflips",
        _flip_framing(form([(IMAGE_PART, p)]), len(p), n),
        p,
        Expect.EITHER,
    ),
}


def with_answer_format(upload: Upload, index: int) -> Upload:
    """The upload asking for the answer format number `index` of ANSWER_FORMATS."""
    query, accept, answer, expect = ANSWER_FORMATS[index % len(ANSWER_FORMATS)]
    headers = dict(upload.headers)
    if accept is not None:
        headers["Accept"] = accept
    described = f"{upload.description} {query or ''}{' Accept: ' + accept if accept else ''}"
    return Upload(
        described.strip(),
        upload.body,
        upload.payload,
        headers,
        query,
        answer,
        combine(upload.expect, expect),
        upload.chunked,
    )


def _flip_framing(body: bytes, payload_length: int, seed: int) -> bytes:
    """Flip a bit in the multipart framing (before or after the image), not in the image."""
    framing = len(body) - payload_length
    if framing <= 0:
        return body
    position = seed % framing
    head = len(body.split(b"\r\n\r\n", 1)[0]) + 4  # where the image data starts
    if position >= head:
        position += payload_length
    damaged = bytearray(body)
    damaged[position] ^= 1 << (seed % 8)
    return bytes(damaged)
