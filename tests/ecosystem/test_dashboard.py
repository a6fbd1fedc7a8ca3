"""The Grafana dashboard uses only metric names the installed code defines."""

from __future__ import annotations

import json

import pytest

from ..conftest import CHART, VALUES_DIR, docs_of, helm_template
from . import metrics_catalog as mc

DASHBOARD = CHART / "dashboards" / "ray-llm.json"


def _panels(dash):
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _exprs(dash):
    for panel in _panels(dash):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def test_catalogs_are_derived_from_the_installed_code():
    # Guards against a scan that silently finds nothing (renamed modules).
    assert len(mc.ray_serve_catalog().exact) > 20
    assert len(mc.vllm_ray_catalog().exact) > 20
    assert len(mc.rayllm_runtime_catalog().exact) >= 6
    # Ray Serve LLM re-exports vLLM's metrics through vLLM's Ray stat logger.
    from pathlib import Path

    import ray.llm

    engine = Path(ray.llm.__file__).parent / "_internal" / "serve" / "engines" / "vllm" / "vllm_engine.py"
    assert "RayPrometheusStatLogger" in engine.read_text()
    # The runtime's own list agrees with what its registry exposes.
    from rayllm_runtime.metrics import METRIC_NAMES

    runtime = mc.rayllm_runtime_catalog()
    for name in METRIC_NAMES:
        assert name in runtime or f"{name}_bucket" in runtime, name


def test_promql_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, model_name) (rate(ray_vllm_e2e_request_latency_seconds_bucket'
            '{namespace=~"$namespace", route="/a b"}[$__rate_interval]))) / on (x) group_left () foo:bar 1e3')
    assert mc.promql_metric_names(expr) == {"ray_vllm_e2e_request_latency_seconds_bucket", "foo:bar"}
    assert "ray_serve_num_http_requests_total" in mc.ray_serve_catalog()
    assert "ray_serve_num_bogus_thing_requests_total" not in mc.ray_serve_catalog()
    assert not mc.known("ray_serve_num_http_requests")  # Ray exports counters with _total


def test_dashboard_is_valid_json_with_unique_panel_ids(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_every_metric_in_every_panel_is_defined_by_the_code(dashboard):
    unknown = []
    seen = set()
    for title, expr in _exprs(dashboard):
        names = mc.promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        for name in names:
            seen.add(name)
            if not mc.known(name):
                unknown.append(f"{title}: {name}")
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            name = mc.label_values_metric(var["query"]["query"])
            assert name, var
            seen.add(name)
            if not mc.known(name):
                unknown.append(f"variable {var['name']}: {name}")
    assert unknown == []
    # The panels the dashboard promises: rate, latency, TTFT, tokens, KV cache, replicas, errors.
    for wanted in (
        "ray_serve_num_http_requests_total",
        "ray_serve_http_request_latency_ms_bucket",
        "ray_vllm_time_to_first_token_seconds_bucket",
        "ray_vllm_prompt_tokens_total",
        "ray_vllm_generation_tokens_total",
        "ray_vllm_kv_cache_usage_perc",
        "ray_serve_deployment_replica_healthy",
        "ray_serve_num_http_error_requests_total",
    ):
        assert wanted in seen, wanted
    assert any(n.startswith("rayllm_") for n in seen)


def test_latency_panels_show_p50_p95_p99(dashboard):
    quantiles = {}
    for title, expr in _exprs(dashboard):
        if expr.startswith("histogram_quantile("):
            quantiles.setdefault(title, set()).add(expr.split(",")[0].split("(")[1].strip())
    serve = [t for t in quantiles if "latency" in t.lower()]
    ttft = [t for t in quantiles if "first token" in t.lower()]
    assert serve and ttft
    assert any(quantiles[t] == {"0.5", "0.95", "0.99"} for t in serve)
    assert any(quantiles[t] == {"0.5", "0.95", "0.99"} for t in ttft)


def test_dashboard_configmap_carries_the_json_and_sidecar_label(helm4, dashboard):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "dev.yaml"], sets=[
        "monitoring.grafanaDashboard.enabled=true",
        "monitoring.grafanaDashboard.annotations.grafana_folder=LLM",
    ]).stdout)
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "ray-llm.json" in d.get("data", {})]
    assert len(cms) == 1
    cm = cms[0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert json.loads(cm["data"]["ray-llm.json"]) == dashboard
