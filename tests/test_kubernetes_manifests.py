"""deploy/kubernetes/: valid against the Kubernetes API's schemas (offline, as bundled by
kubernetes-validate), and true to the service: its settings, port, probes, user and
shutdown time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.testclient import TestClient

from harness import REPO_ROOT
from harness.dockerfile import final_environment, final_user
from service.app import create_app, load_segmenter
from service.config import ENVIRONMENT_VARIABLES, Settings
from service.server import GRACEFUL_SHUTDOWN_SECONDS

pytest_plugins = ["tests.service_fixtures"]

MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
# Set in the image for glibc, not read by the service.
PROCESS_VARIABLES = {"MALLOC_ARENA_MAX"}
# Built into the image per model version; a manifest does not pin it.
BUILD_VARIABLES = {"MODEL_REGISTRY_VERSION"}


def load_all() -> dict[str, dict[str, Any]]:
    """Every resource in the folder, by kind (the kustomization is kustomize's, not the API's)."""
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(set(MANIFESTS.glob("*.yaml")) - {KUSTOMIZATION}):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in resources, f"two {document['kind']}s"
            resources[document["kind"]] = document
    return resources


RESOURCES = load_all()
POD = RESOURCES["Deployment"]["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]
ENVIRONMENT = {item["name"]: item["value"] for item in CONTAINER["env"]}


def test_the_kustomization_applies_every_manifest_and_names_the_image() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    manifests = {path.name for path in MANIFESTS.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert set(kustomization["resources"]) == manifests
    # kustomize replaces the image whose name matches, tag aside: a typo would ship the
    # placeholder.
    [image] = kustomization["images"]
    assert CONTAINER["image"].split(":")[0] == image["name"]


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_valid_against_the_kubernetes_schemas(kind: str) -> None:
    # Strict: a misspelt or misplaced field is an error, not silently ignored.
    kubernetes_validate.validate(RESOURCES[kind], kubernetes_validate.latest_version(), strict=True)


def test_the_expected_resources_and_api_versions() -> None:
    assert {kind: resource["apiVersion"] for kind, resource in RESOURCES.items()} == {
        "Deployment": "apps/v1",
        "Service": "v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1",
    }


def test_every_resource_points_at_the_deployments_pods() -> None:
    labels = RESOURCES["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert RESOURCES["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert RESOURCES["Service"]["spec"]["selector"].items() <= labels.items()
    assert RESOURCES["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    target = RESOURCES["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        RESOURCES["Deployment"]["metadata"]["name"],
    )
    # A drain can always evict a pod: the autoscaler keeps more than the budget's minimum.
    autoscaler = RESOURCES["HorizontalPodAutoscaler"]["spec"]
    assert autoscaler["minReplicas"] > RESOURCES["PodDisruptionBudget"]["spec"]["minAvailable"]
    assert "replicas" not in RESOURCES["Deployment"]["spec"], "the autoscaler owns the count"


def test_settings_are_the_services_and_the_images() -> None:
    unknown = set(ENVIRONMENT) - set(ENVIRONMENT_VARIABLES) - PROCESS_VARIABLES
    assert not unknown, f"service/config.py reads no {sorted(unknown)}"
    Settings.from_env(ENVIRONMENT)  # every value is one the service accepts
    image = final_environment(DOCKERFILE.read_text())
    settable = (set(ENVIRONMENT_VARIABLES) | PROCESS_VARIABLES) - BUILD_VARIABLES
    for name in settable & set(image):  # the image's own settings, unchanged
        assert ENVIRONMENT.get(name) == image[name], name


def test_ports_user_and_shutdown_match_the_service() -> None:
    (port,) = CONTAINER["ports"]
    assert port["containerPort"] == Settings.from_env(ENVIRONMENT).port
    for probe in ("readinessProbe", "livenessProbe"):
        assert CONTAINER[probe]["httpGet"]["port"] == port["name"]
    service_port = RESOURCES["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"]
    user = final_user(DOCKERFILE.read_text())
    assert user is not None and POD["securityContext"]["runAsUser"] == int(user.split(":")[0])
    pause = int(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][1])
    # The pod is killed only after the pause and the service's own graceful shutdown.
    assert POD["terminationGracePeriodSeconds"] > pause + GRACEFUL_SHUTDOWN_SECONDS


def test_resources_cover_the_measured_memory() -> None:
    resources = CONTAINER["resources"]
    request, limit = (_mebibytes(resources[k]["memory"]) for k in ("requests", "limits"))
    assert 190 < request <= limit  # 190 MB: the peak resident memory measured under load


def test_probes_answer_as_the_manifest_expects(model_path: Path) -> None:
    settings = Settings.from_env({**ENVIRONMENT, "MODEL_PATH": str(model_path)})
    with TestClient(create_app(settings, load_segmenter(settings))) as client:
        for probe in ("readinessProbe", "livenessProbe"):
            assert client.get(CONTAINER[probe]["httpGet"]["path"]).status_code == 200


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]
