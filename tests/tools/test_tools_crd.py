"""rayllm_cli.checks_crd: strict KubeRay CRD validation."""

from __future__ import annotations

import copy
import time

import pytest

from rayllm_cli import checks_crd
from rayllm_cli.checks_crd import (
    CrdNotFoundError,
    crd_validator,
    locate_kuberay_crds,
    strict_schema,
    validate_manifest,
)


def _pod(name: str, *, gpu: bool = False) -> dict:
    resources = {"requests": {"cpu": "4", "memory": "16Gi"},
                 "limits": {"cpu": 4, "memory": "16Gi"}}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = 1
        resources["requests"]["nvidia.com/gpu"] = "1"
    return {
        "metadata": {"labels": {"app.kubernetes.io/component": name},
                     "annotations": {"checksum/config": "abc"}},
        "spec": {
            "serviceAccountName": "llm",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 100,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "containers": [{
                "name": name,
                "image": "rayproject/ray-llm:2.60.0-py311-cu128",
                "imagePullPolicy": "IfNotPresent",
                "args": ["--flag"],
                "ports": [{"containerPort": 8000, "name": "serve"},
                          {"containerPort": 8080, "name": "metrics", "protocol": "TCP"}],
                "resources": resources,
                "env": [
                    {"name": "HF_HOME", "value": "/cache/hf"},
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token",
                                                                      "optional": True}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "extra"}}],
                "readinessProbe": {"exec": {"command": ["bash", "-c", "wget -qO- localhost:8000/-/healthz"]},
                                   "initialDelaySeconds": 10, "periodSeconds": 5,
                                   "timeoutSeconds": 2, "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/", "port": "serve"}},
                "lifecycle": {"preStop": {"exec": {"command": ["ray", "stop"]}}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "models", "mountPath": "/home/ray/models", "readOnly": True},
                                 {"name": "shm", "mountPath": "/dev/shm"}],
            }],
            "volumes": [
                {"name": "models", "configMap": {"name": "llm-models", "defaultMode": 420,
                                                 "items": [{"key": "a.yaml", "path": "a.yaml"}]}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            ],
        },
    }


def rayservice() -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "llm", "namespace": "ai",
                     "labels": {"app.kubernetes.io/name": "ray-llm", "helm.sh/chart": "ray-llm-0.1.0"}},
        "spec": {
            "serveConfigV2": "applications: []\n",
            "upgradeStrategy": {"type": "NewCluster"},
            "serveService": {"metadata": {"name": "llm-serve"},
                             "spec": {"type": "ClusterIP",
                                      "ports": [{"name": "serve", "port": 8000, "targetPort": 8000}]}},
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": 60, "upscalingMode": "Default"},
                "headGroupSpec": {"serviceType": "ClusterIP",
                                  "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
                                  "template": _pod("ray-head")},
                "workerGroupSpecs": [{
                    "groupName": "gpu-l4",
                    "replicas": 1, "minReplicas": 0, "maxReplicas": 4,
                    "rayStartParams": {"resources": '"{\\"tier\\": 1}"'},
                    "template": _pod("ray-worker", gpu=True),
                }],
            },
        },
    }


def errors(obj) -> list:
    return [f for f in validate_manifest(obj) if f.is_error]


def test_minimal_and_realistic_rayservice_pass():
    minimal = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "m"},
               "spec": {"rayClusterConfig": {"headGroupSpec": {"template": {
                   "spec": {"containers": [{"name": "h", "image": "rayproject/ray"}]}}}}}}
    assert errors(minimal) == []
    assert validate_manifest(rayservice()) == []


def test_misspelled_field_is_named_with_a_hint():
    rs = rayservice()
    hg = rs["spec"]["rayClusterConfig"]["headGroupSpec"]
    hg["rayStartParam"] = hg.pop("rayStartParams")
    (f,) = errors(rs)
    assert f.path == "spec.rayClusterConfig.headGroupSpec.rayStartParam"
    assert "unknown field" in f.message and "rayStartParams" in f.message
    assert f.rule == "crd" and f.obj == "RayService/llm"


def test_typo_deep_in_pod_template_and_embedded_metadata():
    rs = rayservice()
    c = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    c["readinessProbe"]["exec"]["commands"] = c["readinessProbe"]["exec"].pop("command")
    rs["spec"]["serveService"]["metadata"]["label"] = {"a": "b"}
    paths = sorted(f.path for f in errors(rs))
    assert paths == [
        "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].readinessProbe.exec.commands",
        "spec.serveService.metadata.label",
    ]


def test_wrong_types():
    rs = rayservice()
    wg = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    wg["rayStartParams"]["num-cpus"] = 8  # must be a string
    wg["maxReplicas"] = "4"
    got = {f.path: f.message for f in errors(rs)}
    assert set(got) == {"spec.rayClusterConfig.workerGroupSpecs[0].rayStartParams.num-cpus",
                        "spec.rayClusterConfig.workerGroupSpecs[0].maxReplicas"}
    assert "expected string" in got["spec.rayClusterConfig.workerGroupSpecs[0].rayStartParams.num-cpus"]


def test_missing_required_field():
    rs = rayservice()
    del rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]
    (f,) = errors(rs)
    assert f.path == "spec.rayClusterConfig.workerGroupSpecs[0].groupName"
    assert "required" in f.message


def test_defaulted_fields_are_not_required():
    # workerGroupSpecs[].minReplicas/maxReplicas are in `required` but have defaults.
    schema = strict_schema("RayService")
    wg = schema["properties"]["spec"]["properties"]["rayClusterConfig"]["properties"][
        "workerGroupSpecs"]["items"]
    assert "minReplicas" not in wg["required"] and "maxReplicas" not in wg["required"]
    assert "groupName" in wg["required"]
    rs = rayservice()
    w = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    del w["minReplicas"], w["maxReplicas"]
    assert errors(rs) == []


def test_int_or_string_quantities_and_int32_range():
    rs = rayservice()
    c = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    c["resources"]["limits"]["memory"] = "16GB"  # not a quantity
    c["resources"]["requests"]["cpu"] = 2.5  # CRDs: int-or-string, so a float is rejected
    c["resources"]["limits"]["cpu"] = 2  # an int is fine
    c["resources"]["requests"]["memory"] = ["16Gi"]  # neither int nor string
    c["ports"][0]["containerPort"] = 2**31  # int32 overflow
    got = {f.path: f.message for f in errors(rs)}
    base = "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0]"
    assert set(got) == {f"{base}.resources.limits.memory", f"{base}.resources.requests.memory",
                        f"{base}.resources.requests.cpu", f"{base}.ports[0].containerPort"}
    assert "quantity" in got[f"{base}.resources.limits.memory"]
    assert "integer or a string" in got[f"{base}.resources.requests.memory"]
    assert "integer or a string" in got[f"{base}.resources.requests.cpu"]
    assert "2147483647" in got[f"{base}.ports[0].containerPort"]


def test_list_map_keys_reject_duplicates_after_defaulting():
    rs = rayservice()
    c = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    c["env"].append({"name": "HF_HOME", "value": "/other"})
    c["ports"].append({"containerPort": 8000, "protocol": "TCP"})  # protocol defaults to TCP
    paths = sorted(f.path for f in errors(rs))
    base = "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0]"
    assert paths == [f"{base}.env[3]", f"{base}.ports[2]"]


def test_nulls_are_pruned_with_a_warning():
    rs = rayservice()
    rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["volumes"][0][
        "configMap"]["items"] = None
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"] = None
    found = validate_manifest(rs)
    warn = [f for f in found if f.severity == "warning"]
    assert {f.path for f in warn} == {
        "spec.rayClusterConfig.headGroupSpec.template.spec.volumes[0].configMap.items",
        "spec.rayClusterConfig.workerGroupSpecs[0].groupName"}
    # A pruned required field is then missing.
    assert [f.path for f in found if f.is_error] == ["spec.rayClusterConfig.workerGroupSpecs[0].groupName"]


def test_top_level_and_metadata_checks():
    rs = rayservice()
    rs["status"] = {}
    rs["metadata"]["labels"]["version"] = 1
    rs["metadata"]["labels"]["bad key!"] = "x"
    rs["metadata"]["annotations"] = {"note": True}
    del rs["metadata"]["name"]
    got = {f.path for f in errors(rs)}
    assert {"status", "metadata.name", "metadata.labels.version",
            'metadata.labels["bad key!"]', "metadata.annotations.note"} <= got
    rs = rayservice()
    rs["metadata"]["name"] = "Bad_Name"
    rs["metadata"]["labels"]["app.kubernetes.io/version"] = "1.0+build"
    assert {f.path for f in errors(rs)} == {"metadata.name",
                                            'metadata.labels["app.kubernetes.io/version"]'}


def test_raycluster_and_other_kinds():
    rs = rayservice()
    rc = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
          "spec": copy.deepcopy(rs["spec"]["rayClusterConfig"])}
    assert errors(rc) == []
    rc["spec"]["serveConfigV2"] = "x"
    assert [f.path for f in errors(rc)] == ["spec.serveConfigV2"]
    (notice,) = validate_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert notice.severity == "notice"
    assert errors({"apiVersion": "ray.io/v1", "kind": "RayThing", "metadata": {"name": "x"}})


def test_validator_is_cached_and_fast():
    crd_validator("RayService")
    t = time.perf_counter()
    assert crd_validator("RayService") is crd_validator("RayService")
    for _ in range(20):
        validate_manifest(rayservice())
    assert time.perf_counter() - t < 5


def test_locator_env_and_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLLM_KUBERAY_CRDS", str(tmp_path))
    with pytest.raises(CrdNotFoundError, match="RAYLLM_KUBERAY_CRDS.*ci/fetch-kuberay-crds.sh"):
        locate_kuberay_crds("RayService")
    (tmp_path / "ray.io_rayservices.yaml").write_text("x: 1\n")
    assert locate_kuberay_crds("RayService") == tmp_path / "ray.io_rayservices.yaml"
    # Nothing anywhere: the error says where it looked and how to fetch.
    monkeypatch.delenv("RAYLLM_KUBERAY_CRDS")
    monkeypatch.setenv("RAYLLM_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setattr(checks_crd, "repo_root", lambda: None)
    with pytest.raises(CrdNotFoundError) as exc:
        locate_kuberay_crds("RayService")
    assert "ci/fetch-kuberay-crds.sh" in str(exc.value)
    assert str(tmp_path / "tools" / "kuberay-crds") in str(exc.value)
    (tmp_path / "tools" / "kuberay-crds").mkdir(parents=True)
    (tmp_path / "tools" / "kuberay-crds" / "ray.io_rayclusters.yaml").write_text("x: 1\n")
    assert locate_kuberay_crds("RayCluster").parent == tmp_path / "tools" / "kuberay-crds"


FAKE_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: x.ray.io
spec:
  group: ray.io
  versions:
  - name: v1
"""


@pytest.mark.skipif(not __import__("shutil").which("curl"), reason="needs curl")
def test_fetch_kuberay_crds_script(tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "ci" / "fetch-kuberay-crds.sh"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ray.io_rayservices.yaml", "ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml"):
        (src / name).write_text(FAKE_CRD)
    dest = tmp_path / "tools" / "kuberay-crds"
    env = {"PATH": "/usr/bin:/bin", "DEST": str(dest), "KUBERAY_CRD_BASE_URL": f"file://{src}"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == [
        "VERSION", "ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"]
    assert "v1.7.1" in (dest / "VERSION").read_text()
    # A failed download leaves the previous copy alone and says what to do.
    (src / "ray.io_rayjobs.yaml").unlink()
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "do:" in proc.stderr
    assert (dest / "ray.io_rayjobs.yaml").is_file()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["kuberay-crds"]
