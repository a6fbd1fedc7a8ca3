"""Optional objects (monitoring, nightly suspend) render and pass the offline Kubernetes/CRD checks."""

from __future__ import annotations

import yaml

from ..conftest import VALUES_DIR, docs_of, helm_template, rayservice_of

ALL_ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
    "costControls.nightlyScaleDown.enabled=true",
]


def test_everything_enabled_passes_manifest_checks(helm):
    from rayllm_cli.manifest_checks import check_rendered

    text = helm_template(helm, [VALUES_DIR / "prod.yaml"], sets=ALL_ON).stdout
    report = check_rendered(text)
    assert report.ok, report.summary()
    kinds = {d["kind"] for d in docs_of(text)}
    assert {"ServiceMonitor", "PodMonitor", "CronJob", "Role", "RoleBinding", "ServiceAccount"} <= kinds


def test_suspend_rbac_is_limited_to_this_rayservice(helm4):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"], sets=ALL_ON).stdout)
    name = rayservice_of(docs)["metadata"]["name"]
    role = [d for d in docs if d["kind"] == "Role"][0]
    for rule in role["rules"]:
        assert rule["resources"] == ["rayservices"] and rule["resourceNames"] == [name]
        assert set(rule["verbs"]) <= {"get", "patch"}
    for job in [d for d in docs if d["kind"] == "CronJob"]:
        script = yaml.safe_dump(job["spec"]["jobTemplate"])
        assert name in script and "suspend" in script
