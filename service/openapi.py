"""GET /openapi.json: the API's contract for programs, as an OpenAPI 3.1 document.

Written out by hand rather than generated, because the answers' shapes live in plain
dictionaries in service/app.py; tests/test_service_openapi.py checks that every
route and every status the app can answer is in it, and fuzzes the running service
against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.server import MAX_HEAD_BYTES
from service.uploads import MAX_PARTS

_BINARY = {"type": "string", "format": "binary"}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }
    if headers:
        response["headers"] = headers
    return response


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "summary": summary, "responses": responses}}


_STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
}

_SEGMENT = {
    "post": {
        "summary": "Segment one photo",
        "operationId": "segment",
        "description": (
            "The defects of one photo of a tile (JPEG, PNG, BMP or TIFF, recognised by its "
            "leading bytes), at the photo's own size. Choose the answer with `format`, or "
            "with the Accept header: image/png (mask), application/json, image/jpeg "
            "(overlay); none of them acceptable is a 406."
        ),
        "parameters": [
            {
                "name": "format",
                "in": "query",
                "required": False,
                "description": (
                    "mask: a PNG of the photo's size, 255 defect and 0 background (the "
                    "default); json: the verdict and regions; labels: a PNG of the photo's "
                    "size holding each pixel's class index (0 background; /info lists the "
                    "classes); overlay: the photo with its defects drawn, for a person."
                ),
                "schema": {"type": "string", "enum": ["mask", "json", "labels", "overlay"]},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {"image": _BINARY},
                    }
                },
                "image/*": {"schema": _BINARY},
                "application/octet-stream": {"schema": _BINARY},
            },
        },
        "responses": {
            "200": {
                "description": "The mask or class labels (PNG), the segmentation (JSON) or "
                "the overlay (JPEG; PNG for photos longer than JPEG can store).",
                "content": {
                    "image/png": {"schema": _BINARY},
                    "application/json": {"schema": {"$ref": "#/components/schemas/Segmentation"}},
                    "image/jpeg": {"schema": _BINARY},
                },
                "headers": {
                    "Server-Timing": {
                        "description": "decode, inference, postprocess and total, in ms.",
                        "schema": {"type": "string"},
                    }
                },
            },
            "400": _error(
                "Unknown format, empty, damaged or truncated image, malformed multipart "
                f"body, no field `image`, two of them or more than {MAX_PARTS} parts, or a "
                "client that left before sending its body."
            ),
            "406": _error("The Accept header allows none of the answer formats."),
            "408": _error("The body did not arrive within the body timeout."),
            "413": _error(
                "The body, or the pixel count or side the image header declares, is over "
                "the limit; refused before decoding."
            ),
            "415": _error(
                "The content type is not multipart, image/* or application/octet-stream, "
                "or the file is not a JPEG, PNG, BMP or TIFF image of 8- or 16-bit samples."
            ),
            "503": _error(
                "More photos are waiting than the queue admits; retry later.",
                {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}},
            ),
        },
    }
}

_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "One sentence."}},
    },
    "Region": {
        "type": "object",
        "required": [
            "x",
            "y",
            "width",
            "height",
            "area",
            "mean_probability",
            "class",
            "class_probabilities",
        ],
        "properties": {
            "x": {"type": "integer", "minimum": 0},
            "y": {"type": "integer", "minimum": 0},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "area": {"type": "integer", "minimum": 1, "description": "Defect pixels."},
            "mean_probability": {"type": "number", "minimum": 0, "maximum": 1},
            "class": {
                "type": "string",
                "description": "The defect class with the highest mean probability over the "
                "region; /info lists the classes (a model without them has one, defect).",
            },
            "class_probabilities": {
                "type": "object",
                "description": "Each class's mean probability over the region, background "
                "included.",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    },
    "Segmentation": {
        "type": "object",
        "required": [
            "defective",
            "defect_fraction",
            "score",
            "decision_threshold",
            "threshold",
            "regions_threshold",
            "width",
            "height",
            "regions",
            "timings_ms",
            "model_version",
        ],
        "properties": {
            "defective": {
                "type": "boolean",
                "description": "score >= decision_threshold; a defective tile has at least "
                "one region, a tile that is not has none.",
            },
            "defect_fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "score": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The defect probability of the min_area-th most suspicious "
                "pixel at least `border` pixels (/info) from the photo's edges.",
            },
            "decision_threshold": {"type": "number", "minimum": 0, "maximum": 1},
            "threshold": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The pixel threshold the mask and regions are found at.",
            },
            "regions_threshold": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The threshold the regions were found at: `threshold`, or "
                "`decision_threshold` for a defective tile with no region of min_area pixels "
                "at `threshold` (its region is then the one around the most probable pixel).",
            },
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "regions": {"type": "array", "items": {"$ref": "#/components/schemas/Region"}},
            "timings_ms": {
                "type": "object",
                "required": ["decode", "inference", "postprocess", "total"],
                "additionalProperties": {"type": "number", "minimum": 0},
            },
            "model_version": {"type": "string"},
        },
    },
}

# What any path can answer besides its operations' own statuses, keyed by status: the
# handlers in service/app.py and the HTTP protocol in service/server.py answer each of
# these with a JSON error.
_ANY_ROUTE = {
    "400": _error("The request is not valid HTTP/1.1; the connection is closed."),
    "408": _error("The request headers did not arrive within the header timeout."),
    "404": _error("No such route; the sentence lists the routes."),
    "405": _error(
        "The route does not take this method.",
        {"Allow": {"description": "The methods it takes.", "schema": {"type": "string"}}},
    ),
    "431": _error(
        f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes; the "
        "connection is closed."
    ),
    "500": _error("A bug in the service; the body holds no details."),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Magnetic tile defect segmentation",
        "version": "1",
        "description": (
            "POST a photo of a magnetic tile to /segment and get back where its defects "
            'are. Every client mistake is a 4xx with a JSON body {"error": "..."}; '
            "any path may also answer the responses under components.responses."
        ),
    },
    "paths": {
        "/segment": _SEGMENT,
        "/": _get(
            "page",
            "The page for people",
            {
                "200": {
                    "description": "HTML.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/page.js": _get(
            "pageScript",
            "The page's script",
            {
                "200": {
                    "description": "JavaScript.",
                    "content": {"text/javascript": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/openapi.json": _get(
            "openapi",
            "This document",
            {"200": _json("OpenAPI 3.1.", {"type": "object"})},
        ),
        "/health": _get("health", "Liveness", {"200": _json("The process is alive.", _STATUS)}),
        "/ready": _get(
            "ready",
            "Readiness",
            {
                "200": _json("The model is loaded and warmed up.", _STATUS),
                "503": _json("The model is warming up.", _STATUS),
            },
        ),
        "/info": _get(
            "info",
            "Model and limits",
            {
                "200": _json(
                    "Model version, sha256, input policy, threshold, providers, training "
                    "params, test metrics, limits and answer formats.",
                    {"type": "object", "required": ["model", "limits", "formats"]},
                )
            },
        ),
        "/metrics": _get(
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
    },
    "components": {"schemas": _SCHEMAS, "responses": _ANY_ROUTE},
}


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)
