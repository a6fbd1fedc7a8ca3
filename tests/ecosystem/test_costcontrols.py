"""Nightly scale-down suspends exactly this RayService, with least privilege."""

from __future__ import annotations

import json

import pytest

from ..conftest import CHART, VALUES_DIR, docs_of, helm_template, rayservice_of
from .helpers import builtin_errors, crd_errors

SCENARIO = CHART / "ci" / "scale-down-values.yaml"


@pytest.fixture(scope="module", params=["llm", "team-a-chat"])
def docs(request, helm4):
    return docs_of(helm_template(helm4, [SCENARIO], release=request.param).stdout)


def _kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def test_off_by_default(helm4):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)
    assert not [d for d in docs if d["kind"] in ("CronJob", "Role", "RoleBinding", "ServiceAccount")]


def test_role_allows_only_get_and_patch_of_this_rayservice(docs):
    name = rayservice_of(docs)["metadata"]["name"]
    (role,) = _kind(docs, "Role")
    assert role["rules"] == [{
        "apiGroups": ["ray.io"],
        "resources": ["rayservices"],
        "resourceNames": [name],
        "verbs": ["get", "patch"],
    }]
    assert not _kind(docs, "ClusterRole") and not _kind(docs, "ClusterRoleBinding")
    (binding,) = _kind(docs, "RoleBinding")
    (sa,) = _kind(docs, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ai"}]


def test_cronjobs_patch_suspend_of_the_rendered_rayservice(docs):
    rs = rayservice_of(docs)
    (sa,) = _kind(docs, "ServiceAccount")
    jobs = {j["metadata"]["name"].rsplit("-", 1)[1]: j for j in _kind(docs, "CronJob")}
    assert set(jobs) == {"suspend", "resume"}
    assert jobs["suspend"]["spec"]["schedule"] == "30 19 * * 1-5"
    assert jobs["resume"]["spec"]["schedule"] == "0 7 * * 1-5"
    for action, job in jobs.items():
        spec = job["spec"]
        assert spec["timeZone"] == "Europe/Berlin"
        assert spec["concurrencyPolicy"] == "Forbid"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == sa["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        cmd = container["command"]
        assert cmd[:4] == ["kubectl", "patch", "rayservice", rs["metadata"]["name"]]
        assert cmd[cmd.index("--namespace") + 1] == "ai"
        assert cmd[cmd.index("--type") + 1] == "merge"
        patch = json.loads(cmd[cmd.index("--patch") + 1])
        assert patch == {"spec": {"suspend": action == "suspend"}}
        # The patched field exists in KubeRay's RayService schema: applying it
        # to the rendered object must still pass the strict CRD check.
        patched = json.loads(json.dumps(rs))
        patched["spec"].update(patch["spec"])
        assert crd_errors(patched) == []


def test_scale_down_objects_pass_strict_builtin_validation(docs):
    objs = [d for d in docs if d["kind"] in ("CronJob", "Role", "RoleBinding", "ServiceAccount")]
    assert len(objs) == 5
    assert builtin_errors(objs) == []
    assert crd_errors(rayservice_of(docs)) == []
