"""Schema-driven fuzzing: Schemathesis generates requests from GET /openapi.json and sends
them to a real server; no answer may be a 5xx or differ from the document.

Bounded and deterministic: a fixed number of examples per operation from a fixed seed,
so a failure reproduces and the test takes seconds.
"""

from __future__ import annotations

from collections import Counter
from itertools import product

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.server import Server

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow  # a real server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.core.failures import Failure, FailureGroup  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

# Per operation and mode; operations without inputs (the GET routes) give one each.
EXAMPLES_PER_OPERATION = 100
# What a schema cannot say: that a body of `format: binary` must also be a readable image.
# Schemathesis would count each refused random body as a wrong answer.
EXCLUDED_CHECKS = [positive_data_acceptance]


def image_bodies(tile: np.ndarray) -> st.SearchStrategy[bytes]:
    """Real images of each format and size, bytes of a real image cut or flipped, or noise."""
    images = [
        cv2.imencode(extension, picture)[1].tobytes()
        for extension in (".jpg", ".png", ".bmp", ".tiff")
        for picture in (tile, tile[:1, :1], tile[:37, :101])
    ]
    cut = st.tuples(st.sampled_from(images), st.floats(0, 1)).map(
        lambda pair: pair[0][: int(len(pair[0]) * pair[1])]
    )
    flipped = st.tuples(st.sampled_from(images), st.integers(0, 10_000)).map(
        lambda pair: bytes(
            b ^ 0xFF if i == pair[1] % len(pair[0]) else b for i, b in enumerate(pair[0])
        )
    )
    return st.one_of(st.sampled_from(images), cut, flipped, st.binary(max_size=2048))


def test_fuzzing_from_the_document_finds_no_5xx_and_no_deviation(
    server: Server, tile: np.ndarray
) -> None:
    bodies = image_bodies(tile)
    for media_type in ("image/*", "application/octet-stream"):
        schemathesis.openapi.media_type(media_type, bodies)
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    statuses: Counter[int] = Counter()
    violations: list[str] = []

    operations = [result.ok() for result in schema.get_all_operations()]
    # Positive cases fit the document; negative ones break it (an unknown format, a
    # body of the wrong type), and must get a 4xx. An operation without inputs has
    # nothing to break.
    for operation, mode in product(operations, GenerationMode):
        has_inputs = any(operation.iter_parameters()) or "requestBody" in operation.definition.raw
        if mode == GenerationMode.NEGATIVE and not has_inputs:
            continue

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,  # the same examples on every run
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exchange(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.base_url, timeout=30)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
            except (Failure, FailureGroup) as failure:
                violations.append(f"{case.method} {case.path} -> {response.status_code}: {failure}")

        exchange()

    tried = sum(statuses.values())
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    print(
        f"schemathesis: {tried} cases, {server_errors} answers 5xx, "
        f"{len(violations)} schema violations; statuses {dict(sorted(statuses.items()))}"
    )
    assert tried >= EXAMPLES_PER_OPERATION
    assert server_errors == 0 and not violations, "\n".join(violations[:10])
