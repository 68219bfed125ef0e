"""The ONNX contract between the export stage and the service, in one place.

An exported model file takes one uint8 input named `image` [N, 1, H, W] and gives float32
defect probabilities named `probability` of the same shape (1 - P(background)); a model
with defect classes also gives `class_probabilities` [N, C, H, W], class 0 the
background. Its metadata_props carry a `ModelCard`: how to serve it (input policy, pixel
and decision thresholds, min_area, border, class names) and where it came from (version,
training params, test metrics). Export writes the card with `to_metadata`,
the service reads it back with `from_metadata`; the checks on the file itself (is it
there, is it the expected one, does it load and have the named input and output) live
here too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service.framing import InputPolicy

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

INPUT_NAME = "image"
OUTPUT_NAME = "probability"
CLASSES_OUTPUT_NAME = "class_probabilities"

# The metadata_props keys, as the committed models/segmenter.onnx has them.
INPUT_POLICY_KEY = "input_policy"
THRESHOLD_KEY = "threshold"
DECISION_THRESHOLD_KEY = "decision_threshold"
CLASSES_KEY = "classes"
MIN_AREA_KEY = "min_area"
BORDER_KEY = "border"
VERSION_KEY = "model_version"
TRAINING_PARAMS_KEY = "training_params"
TEST_METRICS_KEY = "test_metrics"

_Value = TypeVar("_Value")


class ModelError(RuntimeError):
    """The model file is missing, unreadable or does not follow the ONNX contract."""


@dataclass(frozen=True)
class ModelCard:
    """What an exported model file says about itself in its metadata_props."""

    policy: InputPolicy
    threshold: float
    min_area: int
    # None in files from before the decision threshold: they decide on `threshold`.
    decision_threshold: float | None = None
    # The names of `class_probabilities`' rows, background first; () for a model without.
    classes: tuple[str, ...] = ()
    # The band along the photo's edges that the image score leaves out; 0 in older files.
    border: int = 0
    version: str | None = None
    # Provenance for people reading /info, as JSON values; a model without it still serves.
    training_params: Any = None
    test_metrics: Any = None

    def to_metadata(self) -> dict[str, str]:
        """The metadata_props to write into the model file."""
        metadata = {
            INPUT_POLICY_KEY: self.policy.to_json(),
            THRESHOLD_KEY: str(self.threshold),
            MIN_AREA_KEY: str(self.min_area),
        }
        if self.decision_threshold is not None:
            metadata[DECISION_THRESHOLD_KEY] = str(self.decision_threshold)
        if self.classes:
            metadata[CLASSES_KEY] = json.dumps(list(self.classes))
        if self.border:
            metadata[BORDER_KEY] = str(self.border)
        if self.version is not None:
            metadata[VERSION_KEY] = self.version
        if self.training_params is not None:
            metadata[TRAINING_PARAMS_KEY] = json.dumps(self.training_params)
        if self.test_metrics is not None:
            metadata[TEST_METRICS_KEY] = json.dumps(self.test_metrics)
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | Path) -> ModelCard:
        """The card in the metadata_props of the model file `source`; raises ModelError with
        one sentence naming the first missing or invalid key."""
        return cls(
            policy=_required(metadata, INPUT_POLICY_KEY, InputPolicy.from_json, source),
            threshold=_required(metadata, THRESHOLD_KEY, float, source),
            min_area=_required(metadata, MIN_AREA_KEY, _region_pixels, source),
            decision_threshold=_optional(metadata, DECISION_THRESHOLD_KEY, float, source),
            classes=_optional(metadata, CLASSES_KEY, _class_names, source) or (),
            border=_optional(metadata, BORDER_KEY, _pixels, source) or 0,
            version=metadata.get(VERSION_KEY),
            training_params=_provenance(metadata, TRAINING_PARAMS_KEY),
            test_metrics=_provenance(metadata, TEST_METRICS_KEY),
        )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def check_model_file(path: Path, expected_sha256: str | None) -> str:
    """The model file's SHA-256, once `path` is known to be a file with the expected hash
    (when one is expected); raises ModelError otherwise.

    onnxruntime cannot see a flipped bit in the weights; a checksum can.
    """
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise ModelError(f"Model file {path} {problem}; set MODEL_PATH to an exported .onnx file.")
    actual = file_sha256(path)
    if expected_sha256 is not None and actual != expected_sha256:
        raise ModelError(
            f"Model file {path} has SHA-256 {actual}, not the {expected_sha256} that "
            "MODEL_SHA256 expects; it is damaged or another model: restore it or update "
            "MODEL_SHA256."
        )
    return actual


def open_session(
    path: Path, providers: Sequence[str] | None, intra_op_threads: int
) -> InferenceSession:
    """An onnxruntime session on the model file, checked to have the contract's input and
    output; raises ModelError with one sentence when it does not load or lacks them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads otherwise busy-wait after each run and take the CPU from
    # decoding, encoding and the event loop: measured 121 -> 71 ms p50 on 2 cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A memory pattern is a block planned per input shape and kept: with two sessions it
    # held 45 MB more at peak (236 vs 190 MB) for no measurable speed on 2 cores.
    options.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(
            str(path), options, providers=list(providers or default_providers())
        )
    except Exception as error:  # onnxruntime raises several unrelated types for a bad file
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(
            f"Model file {path} is not a loadable ONNX model ({first_line}); "
            "re-export it or restore it with `git checkout models/segmenter.onnx`."
        ) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type != "tensor(uint8)":
        raise ModelError(f"Model file {path} must take one uint8 input named '{INPUT_NAME}'.")
    if OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelError(f"Model file {path} must have an output named '{OUTPUT_NAME}'.")
    return session


def check_outputs(session: InferenceSession, card: ModelCard, path: Path) -> None:
    """Raises ModelError when a model whose card names classes lacks their output, or
    gives another number of them."""
    if not card.classes:
        return
    outputs = {o.name: o for o in session.get_outputs()}
    if CLASSES_OUTPUT_NAME not in outputs:
        raise ModelError(
            f"Model file {path} names classes in its metadata but has no output named "
            f"'{CLASSES_OUTPUT_NAME}'; re-export it with the pipeline's export stage."
        )
    count = outputs[CLASSES_OUTPUT_NAME].shape[1]
    if isinstance(count, int) and count != len(card.classes):
        raise ModelError(
            f"Model file {path} names {len(card.classes)} classes but its "
            f"'{CLASSES_OUTPUT_NAME}' has {count}; re-export it with the pipeline's export stage."
        )


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu sees a GPU, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _required(
    metadata: Mapping[str, str], key: str, parse: Callable[[str], _Value], source: str | Path
) -> _Value:
    if key not in metadata:
        raise ModelError(
            f"Model file {source} lacks the metadata key '{key}'; "
            "re-export it with the pipeline's export stage."
        )
    try:
        return parse(metadata[key])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ModelError(
            f"Model file {source} has an invalid '{key}' in its metadata ({error!r}); "
            "re-export it with the pipeline's export stage."
        ) from None


def _optional(
    metadata: Mapping[str, str], key: str, parse: Callable[[str], _Value], source: str | Path
) -> _Value | None:
    return _required(metadata, key, parse, source) if key in metadata else None


def _class_names(text: str) -> tuple[str, ...]:
    names = json.loads(text)
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError("classes must be a JSON list of two or more distinct names")
    return tuple(names)


def _region_pixels(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("a region holds at least one pixel")
    return value


def _pixels(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("a number of pixels cannot be negative")
    return value


def _provenance(metadata: Mapping[str, str], key: str) -> Any:
    """A provenance value parsed from JSON; text that is not JSON is kept as it is."""
    text = metadata.get(key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
