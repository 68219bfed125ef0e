"""The ONNX contract: the model card written by export is the card the service reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest

from harness import REPO_ROOT
from harness.stand_in_model import build_stand_in_model
from service.contract import ModelCard, ModelError, check_model_file, open_session
from service.framing import InputPolicy
from service.segmenter import Segmenter

COMMITTED_MODEL = REPO_ROOT / "models" / "segmenter.onnx"


def test_the_committed_model_card_reads_and_writes_back_unchanged() -> None:
    session = open_session(COMMITTED_MODEL, ["CPUExecutionProvider"], 1)
    metadata = session.get_modelmeta().custom_metadata_map
    card = ModelCard.from_metadata(metadata, COMMITTED_MODEL)
    written = card.to_metadata()
    assert ModelCard.from_metadata(written, COMMITTED_MODEL) == card
    # The same keys and texts; the policy's JSON may have dropped fields only old files carry.
    assert written.keys() == metadata.keys()
    assert {k: v for k, v in written.items() if k != "input_policy"} == {
        k: v for k, v in metadata.items() if k != "input_policy"
    }
    assert card.version and isinstance(card.test_metrics, dict)
    assert isinstance(card.training_params, dict)


def test_a_card_without_provenance_round_trips() -> None:
    card = ModelCard(InputPolicy(16, 1024, test_time_flip=True), 0.7, 64)
    assert set(card.to_metadata()) == {"input_policy", "threshold", "min_area"}
    assert ModelCard.from_metadata(card.to_metadata(), "m.onnx") == card


def test_a_card_with_classes_a_decision_threshold_and_a_border_round_trips() -> None:
    card = ModelCard(
        InputPolicy(32, 1024),
        0.6,
        32,
        decision_threshold=0.4321,
        classes=("background", "crack"),
        border=4,
    )
    metadata = card.to_metadata()
    assert metadata["decision_threshold"] == "0.4321"
    assert metadata["classes"] == '["background", "crack"]'
    assert metadata["border"] == "4"
    assert ModelCard.from_metadata(metadata, "m.onnx") == card


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("threshold", None, "lacks the metadata key 'threshold'"),
        ("min_area", "many", "has an invalid 'min_area'"),
        ("min_area", "0", "has an invalid 'min_area'"),
        ("min_area", "-8", "has an invalid 'min_area'"),
        ("input_policy", '{"stride": 16}', "has an invalid 'input_policy'"),
        ("input_policy", "[]", "has an invalid 'input_policy'"),
        ("decision_threshold", "high", "has an invalid 'decision_threshold'"),
        ("classes", '["background"]', "has an invalid 'classes'"),
        ("classes", '["background", "crack", "crack"]', "has an invalid 'classes'"),
        ("classes", "crack", "has an invalid 'classes'"),
        ("border", "-4", "has an invalid 'border'"),
    ],
)
def test_a_missing_or_invalid_key_is_refused_in_one_sentence(
    key: str, value: str | None, message: str
) -> None:
    card = ModelCard(InputPolicy(16, 1024), 0.5, 16, 0.5, ("background", "crack"))
    metadata = card.to_metadata()
    if value is None:
        del metadata[key]
    else:
        metadata[key] = value
    with pytest.raises(ModelError, match=f"^Model file m.onnx {message}") as caught:
        ModelCard.from_metadata(metadata, "m.onnx")
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("re-export it with the pipeline's export stage.")


def test_provenance_that_is_not_json_is_kept_as_text() -> None:
    metadata = {**ModelCard(InputPolicy(16, 1024), 0.5, 16).to_metadata(), "test_metrics": "n/a"}
    assert ModelCard.from_metadata(metadata, "m.onnx").test_metrics == "n/a"


def test_model_file_check_gives_the_hash_and_refuses_another(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert check_model_file(model, None) == check_model_file(model, digest) == digest
    with pytest.raises(ModelError, match=r"not the 0{64} that MODEL_SHA256 expects"):
        check_model_file(model, "0" * 64)
    with pytest.raises(ModelError, match="is a directory"):
        check_model_file(tmp_path, None)


def test_a_model_whose_card_names_classes_it_does_not_output_is_refused(tmp_path: Path) -> None:
    path = build_stand_in_model(tmp_path / "m.onnx", with_classes=False)
    model = onnx.load(path)
    onnx.helper.set_model_props(
        model,
        {
            **{p.key: p.value for p in model.metadata_props},
            "classes": '["background", "crack"]',
        },
    )
    onnx.save(model, path)
    with pytest.raises(ModelError, match="names classes in its metadata but has no output"):
        Segmenter.from_onnx(path)
