"""The defaults the chart documents are the defaults it renders, and both are the Pydantic models'.

values.yaml and the README table are generated from rayllm_schemas (`ray-llm schema`,
`ray-llm docs`); the templates carry no default literals of their own: top-level keys come
from values.yaml, keys of tiers/models/llmApps/customApps entries from _generated.tpl. A
minimal values file renders with exactly those defaults.
"""

from __future__ import annotations

import yaml

from rayllm_schemas.docs_gen import EXAMPLE_ENTRIES, MAP_ENTRIES, keys
from rayllm_schemas.values import ChartValues, HeadValues, ServeValues, TierValues

from ..conftest import CHART, docs_of, helm_template, model_files_of, rayservice_of, serve_config_of, write_values

MINIMAL = {
    "tiers": {"small": {"acceleratorType": "T4"}},
    "llmApps": {"chat": {"routePrefix": "/"}},
    "models": {"m": {"tier": "small", "family": "f", "app": "chat",
                     "model_loading_config": {"model_id": "m", "model_source": "org/m"}}},
}


def _resources(model_default) -> dict:
    return {kind: {k: str(v) for k, v in getattr(model_default, kind).model_dump(by_alias=True, exclude_none=True).items()}
            for kind in ("requests", "limits")}


def test_values_yaml_is_the_models_defaults():
    documented = yaml.safe_load((CHART / "values.yaml").read_text())
    assert documented == ChartValues().model_dump(by_alias=True, mode="json")


def test_readme_table_documents_map_entries_and_nested_defaults():
    readme = (CHART / "README.md").read_text()
    rows = {k.path: k for k in keys()}
    for prefix in MAP_ENTRIES:
        entry_rows = [p for p in rows if p.startswith(f"{prefix}.<name>.")]
        assert entry_rows, prefix
        for path in entry_rows:
            assert f"| `{path}` |" in readme, path
    # a nested default is its parent's: HeadValues' default resources, not ResourceList's None
    assert rows["head.resources.requests.memory"].default == HeadValues().resources.requests.memory == "8Gi"
    tier_resources = TierValues.model_fields["resources"].default_factory()
    assert rows["tiers.<name>.resources.limits.cpu"].default == tier_resources.limits.cpu == "8"


def test_example_entries_are_valid_values():
    values = {key: {name: entry} for key, (name, entry) in EXAMPLE_ENTRIES.items()}
    ChartValues.model_validate(values)


def test_a_minimal_release_renders_the_documented_defaults(helm4, tmp_path):
    docs = docs_of(helm_template(helm4, [write_values(tmp_path, "minimal.yaml", MINIMAL)]).stdout)
    service = rayservice_of(docs)
    cluster = service["spec"]["rayClusterConfig"]
    tier_default, head_default, serve_default = TierValues(acceleratorType="T4"), HeadValues(), ServeValues()
    (group,) = cluster["workerGroupSpecs"]
    container = group["template"]["spec"]["containers"][0]
    gpus = {tier_default.gpu_resource_name: str(tier_default.gpus_per_worker)}
    want = _resources(tier_default.resources)
    assert container["resources"] == {"requests": {**want["requests"], **gpus}, "limits": {**want["limits"], **gpus}}
    assert (group["minReplicas"], group["maxReplicas"]) == (tier_default.min_replicas, tier_default.max_replicas)
    assert group["resources"]["GPU"] == str(tier_default.gpus_per_worker)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == tier_default.pytorch_cuda_alloc_conf
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"] == _resources(head_default.resources)
    defaults = ChartValues()
    assert head["image"] == f"{defaults.image.repository}:{defaults.image.tag}"
    assert head["imagePullPolicy"] == defaults.image.pull_policy
    opts = cluster["autoscalerOptions"]
    auto = defaults.ray_service.autoscaler_options
    assert (opts["version"], opts["idleTimeoutSeconds"], opts["upscalingMode"]) == (
        auto.version, auto.idle_timeout_seconds, auto.upscaling_mode)
    assert service["spec"]["upgradeStrategy"]["type"] == defaults.ray_service.upgrade_strategy
    serve = serve_config_of(docs)
    assert serve["http_options"]["port"] == serve_default.port and serve["proxy_location"] == serve_default.proxy_location
    (app,) = serve["applications"]
    assert app["args"]["config_wait_timeout_s"] == serve_default.config_wait_timeout_s
    svc = service["spec"]["serveService"]["spec"]
    assert (svc["type"], svc["ports"][0]["port"]) == (serve_default.service.type, serve_default.service.port)
    (model_file,) = model_files_of(docs).values()
    bundle = yaml.safe_load(model_file)["placement_group_config"]["bundle_per_worker"]
    assert bundle["GPU"] == ChartValues.model_validate(MINIMAL).models["m"].gpu_share
