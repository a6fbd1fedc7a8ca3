"""Every pod the chart creates meets the Pod Security Standards "restricted" level.

Checked on every pod template of every values file and CI scenario, plus
releases with every optional object on and with in-tree autoscaling off: the
Ray head (with KubeRay's autoscaler sidecar), each worker group (with KubeRay's
wait-gcs-ready init container) and the nightly scale-down CronJobs.

Deliberate deviations, documented in templates/rayservice/_pod.tpl and
ci/checkov-skips.yaml: the Ray pods run as the image's uid 1000 (not a uid
above 10000) and without readOnlyRootFilesystem (Ray and the engines write
under /tmp and /home/ray). Neither is required by "restricted". GPUs need
nothing privileged: the device plugin hands them over as a resource.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import List, Tuple

import pytest
import yaml

from ..conftest import CI_VALUES_FILES, REPO, VALUES_DIR, VALUES_FILES, docs_of, helm_template, rayservice_of, write_values
from .pods import containers_of, release_pods, restricted_violations

SECRET_OPTIONS = Path(__file__).parent / "values" / "secret-options-values.yaml"
NO_AUTOSCALER = {"rayService": {"enableInTreeAutoscaling": False}}

CASES = [pytest.param([p], id=f"values/{p.name}") for p in VALUES_FILES]
CASES += [pytest.param([p], id=f"ci/{p.name}") for p in CI_VALUES_FILES]
CASES += [pytest.param([VALUES_DIR / "prod.yaml", SECRET_OPTIONS], id="prod+every-option")]
CASES += [pytest.param([VALUES_DIR / "prod.yaml", NO_AUTOSCALER], id="prod+no-autoscaler")]


def _render(helm4, tmp_path, values) -> List[dict]:
    files = [v if isinstance(v, Path) else write_values(tmp_path, "overlay.yaml", v) for v in values]
    return docs_of(helm_template(helm4, files).stdout)


@pytest.mark.parametrize("values", CASES)
def test_every_pod_meets_pss_restricted(helm4, tmp_path, values):
    docs = _render(helm4, tmp_path, values)
    pods = release_pods(docs)
    rs = rayservice_of(docs)
    cluster = rs["spec"]["rayClusterConfig"]
    autoscaling = bool(cluster.get("enableInTreeAutoscaling"))
    assert len([r for r, _ in pods if r == "head" or r.startswith("worker:")]) == 1 + len(cluster.get("workerGroupSpecs") or [])

    problems: List[Tuple[str, str]] = [(role, v) for role, pod in pods for v in restricted_violations(pod)]
    assert problems == [], "\n".join(f"{r}: {v}" for r, v in problems)

    for role, pod in pods:
        spec = pod["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}, role
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), role
        assert not [v for v in spec.get("volumes") or [] if "hostPath" in v], role
        for where, c in containers_of(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (role, where)
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), (role, where)
            assert not sc.get("privileged"), (role, where)
            assert c.get("resources", {}).get("limits"), (role, where)

        if role == "head" or role.startswith("worker:"):
            # The Ray images' user; see the module docstring for the uid and read-only root deviations.
            assert psc["runAsUser"] == 1000, role
            ray = spec["containers"][0]  # KubeRay's probes, injected (the chart writes none)
            assert ray.get("readinessProbe") and ray.get("livenessProbe"), role
        if role.startswith("worker:"):
            assert spec["automountServiceAccountToken"] is False, role
        if role == "head":
            # The autoscaler sidecar is the head's only API client.
            assert spec.get("automountServiceAccountToken", True) is autoscaling, role
            assert [c["name"] for c in spec["containers"]][1:] == (["autoscaler"] if autoscaling else [])
        if role.startswith("CronJob:"):
            c = spec["containers"][0]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, role
            assert psc["runAsUser"] > 10000, role


def test_autoscaler_sidecar_settings_come_from_the_chart(helm4):
    cluster = rayservice_of(docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout))["spec"]["rayClusterConfig"]
    opts = cluster["autoscalerOptions"]
    assert opts["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert opts["resources"]["limits"]


def test_read_only_root_deviation_is_documented():
    skips = {s["id"]: s for s in yaml.safe_load((REPO / "ci" / "checkov-skips.yaml").read_text())["skips"]}
    assert "/home/ray" in skips["CKV_K8S_22"]["reason"] and "CKV_K8S_40" in skips
    pod_tpl = (REPO / "charts" / "ray-llm" / "templates" / "rayservice" / "_pod.tpl").read_text()
    assert "readOnlyRootFilesystem" in pod_tpl and '"restricted"' in pod_tpl


GOOD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "x"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "c",
            "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "ports": [{"containerPort": 8000}],
        }],
        "volumes": [{"name": "v", "emptyDir": {}}],
    },
}


def _mutate(path: str, value):
    pod = copy.deepcopy(GOOD_POD)
    node = pod["spec"]
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    node[keys[-1]] = value
    return pod


@pytest.mark.parametrize(
    "path, value",
    [
        ("hostNetwork", True),
        ("hostPID", True),
        ("hostIPC", True),
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}]),
        ("securityContext.runAsNonRoot", False),
        ("securityContext.runAsUser", 0),
        ("securityContext.seccompProfile", {"type": "Unconfined"}),
        ("containers.0.securityContext.privileged", True),
        ("containers.0.securityContext.allowPrivilegeEscalation", True),
        ("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}),
        ("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        ("containers.0.ports", [{"containerPort": 8000, "hostPort": 8000}]),
        ("initContainers", [{"name": "i", "image": "busybox"}]),
    ],
)
def test_the_restricted_check_has_teeth(path, value):
    assert restricted_violations(GOOD_POD) == []
    assert restricted_violations(_mutate(path, value)), (path, value)
