"""ServiceMonitor and PodMonitor select what KubeRay and the chart really label."""

from __future__ import annotations

import pytest

from ..conftest import VALUES_DIR, docs_of, helm_template, rayservice_of
from .helpers import prometheus_errors

ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.labels.release=prometheus",
]


def _one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.fixture(scope="module")
def prod_docs(helm4):
    return docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"], sets=ON).stdout)


def test_off_by_default(helm4):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "ray-llm.json" in d.get("data", {})]


def test_servicemonitor_selects_kuberays_head_service(prod_docs):
    sm = _one(prod_docs, "ServiceMonitor")
    assert prometheus_errors(sm) == []
    rs = rayservice_of(prod_docs)
    name = rs["metadata"]["name"]
    # KubeRay labels the RayService's "<name>-head-svc" with these (BuildHeadServiceForRayService).
    assert sm["spec"]["selector"]["matchLabels"] == {
        "ray.io/originated-from-crd": "RayService",
        "ray.io/identifier": f"{name}-head",
        "ray.io/node-type": "head",
    }
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ai"]}
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    # KubeRay builds the head Service's ports from the head container's named ports.
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head_ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert head_ports["metrics"] == 8080
    assert rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"] == "8080"
    endpoints = sm["spec"]["endpoints"]
    assert endpoints[0] == {"port": "metrics", "path": "/metrics", "interval": "30s"}
    # prod's gateway app exposes rayllm_* at <route>/metrics through the serve port.
    assert {"port": "serve", "path": "/gateway/metrics", "interval": "30s"} in endpoints
    assert all(ep["port"] in head_ports for ep in endpoints)


def test_podmonitor_selects_ray_pods_of_this_release(prod_docs, helm4):
    rs = rayservice_of(prod_docs)
    cluster = rs["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]

    def selected(pm, tmpl):
        labels = tmpl["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items())

    def has_metrics_port(tmpl):
        return any(p.get("name") == "metrics" for c in tmpl["spec"]["containers"] for p in c.get("ports", []))

    # PodMonitor alone: head and every worker.
    alone = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"], sets=["monitoring.podMonitor.enabled=true"]).stdout)
    pm = _one(alone, "PodMonitor")
    assert prometheus_errors(pm) == []
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert all(selected(pm, t) and has_metrics_port(t) for t in templates)
    # With the ServiceMonitor scraping the head, the PodMonitor keeps to workers.
    pm = _one(prod_docs, "PodMonitor")
    assert not selected(pm, templates[0])
    assert all(selected(pm, t) for t in templates[1:])
    # Another release's pods are not selected.
    other = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"], release="other", sets=ON).stdout)
    other_rs = rayservice_of(other)
    assert not selected(pm, other_rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"])
