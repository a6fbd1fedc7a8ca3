"""Scale-to-zero of the chart's releases on Ray's own autoscaler.

For each scenario (values/dev.yaml, values/staging.yaml, values/prod.yaml, and prod with
the CPU system group on) the chart is rendered with real helm, and the rendered RayCluster
becomes Ray's fake multi-node autoscaling cluster with the node types Ray's KubeRay
derivation gives (tests/autoscaler/fake_cluster.py). The rendered serveConfigV2 is deployed
on it with every LLMConfig's ``server_cls`` set to a weightless LLMServer subclass
(tests/autoscaler/fake_llm_server.py) and the gateway as rendered (tests/autoscaler/harness.py).

One cluster per scenario, shared by the tests of that scenario; the phases (idle floor,
one request, back to the floor) run once, whichever test asks first.
"""

from __future__ import annotations

import pytest
import yaml

from tests.autoscaler.fake_cluster import (
    PLACEMENT_PREFIXES,
    TEST_IDLE_TIMEOUT_S,
    gpu_nodes,
)
from tests.autoscaler.fake_llm_server import FIXED_TEXT
from tests.autoscaler.harness import (
    GATEWAY_IMPORT_PATH,
    LLM_IMPORT_PATHS,
    Scenario,
    ScenarioRun,
    fixed_text_of,
    min_replicas_overlay,
)
from tests.conftest import VALUES_DIR, docs_of, helm_template, write_values

pytestmark = [pytest.mark.slow, pytest.mark.ray]

#: The model each scenario requests: one per tier across the suite (small, medium, large,
#: xlarge), both prod requests on a tensor_parallel_size 2 model.
SCENARIOS = [
    Scenario("dev", "dev.yaml", request_model="qwen-0-5b"),
    Scenario("staging", "staging.yaml", request_model="falcon3-7b"),
    Scenario("prod", "prod.yaml", request_model="falcon3-10b"),
    Scenario("prod-system-group", "prod.yaml", request_model="falcon-40b", sets=("systemGroup.enabled=true",)),
]


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda s: s.id)
def run(request, helm4, tmp_path_factory):
    from rayllm_runtime.testing import free_port

    scenario: Scenario = request.param
    root = tmp_path_factory.mktemp(scenario.id)
    values_path = VALUES_DIR / scenario.values
    files = [values_path]
    docs = docs_of(helm_template(helm4, files, scenario.sets).stdout)
    overlay = min_replicas_overlay(docs)
    if overlay:  # e.g. prod's falcon3-7b renders min_replicas 1: this scenario is about the zero floor
        files.append(write_values(root, "min-replicas-zero.yaml", overlay))
        docs = docs_of(helm_template(helm4, files, scenario.sets).stdout)
    values = yaml.safe_load(values_path.read_text())
    scenario_run = ScenarioRun(scenario, docs, values, root, overlay)
    try:
        scenario_run.start(http_port=free_port())
        yield scenario_run
    finally:
        scenario_run.stop()
        print(f"\n[{scenario.id}] " + ", ".join(f"{k}={v:.1f}" for k, v in scenario_run.timings.items()))


def _floor_kinds(run: ScenarioRun):
    return ["head"] + (["system"] if run.system_group else [])


def _model_replicas(replicas, deployment: str):
    return [n for name, nodes in replicas.items() if name.endswith(":" + deployment) for n in nodes]


def test_the_fake_cluster_is_rays_derivation_of_the_rendered_cluster(run):
    """Node types: Ray's KubeRay derivation; GPU and placement resources, min/max workers untouched."""
    spec = run.rayservice["spec"]["rayClusterConfig"]
    derived = run.fitted.derived
    assert derived["idle_timeout_minutes"] * 60 == spec["autoscalerOptions"]["idleTimeoutSeconds"]
    groups = {g["groupName"]: g for g in spec.get("workerGroupSpecs", [])}
    assert set(run.fitted.worker_types) == set(groups)
    for name, group in groups.items():
        fitted = run.fitted.worker_types[name]
        assert (fitted["min_workers"], fitted["max_workers"]) == (group["minReplicas"], group["maxReplicas"])
        for key, amount in derived["available_node_types"][name]["resources"].items():
            if key == "GPU" or key.startswith(PLACEMENT_PREFIXES):
                assert fitted["resources"][key] == amount, (name, key)
        for key, amount in group.get("resources", {}).items():  # the group's Ray resources, as rendered
            if key not in ("CPU", "GPU", "memory"):
                assert fitted["resources"][key] == float(amount), (name, key)
    # The live head advertises the rendered head group's placement resource, and no GPU (nor CPU
    # where the render says 0: prod keeps every replica off the head's CPUs).
    heads = [n for n in run.idle.nodes if n.kind == "head"]
    assert len(heads) == 1
    for key, amount in spec["headGroupSpec"].get("resources", {}).items():
        if key.startswith(PLACEMENT_PREFIXES) or float(amount) == 0:
            assert heads[0].resources.get(key, 0.0) == float(amount), (key, heads[0].resources)


def test_llm_configs_deployed_are_the_rendered_ones_but_server_cls_and_serve_delays(run):
    from tests.autoscaler.fake_llm_server import SERVER_CLS
    from tests.autoscaler.harness import TEST_SERVE_AUTOSCALING

    assert run.prepared.llm_configs.keys() == run.prepared.rendered_llm_configs.keys()
    for model_id, deployed in run.prepared.llm_configs.items():
        rendered = run.prepared.rendered_llm_configs[model_id]
        assert deployed["server_cls"] == SERVER_CLS and "server_cls" not in rendered
        for key in ("placement_group_config", "accelerator_type", "engine_kwargs", "model_loading_config"):
            assert deployed.get(key) == rendered.get(key), (model_id, key)
        auto = dict(deployed["deployment_config"]["autoscaling_config"])
        assert {k: auto.pop(k) for k in TEST_SERVE_AUTOSCALING} == TEST_SERVE_AUTOSCALING
        assert {**deployed["deployment_config"], "autoscaling_config": auto} == rendered["deployment_config"], model_id
        assert set(deployed) - {"server_cls"} == set(rendered), model_id


def test_every_model_renders_a_zero_floor(run):
    """The scenario's premise: with the overlay (if any), every LLMConfig has min_replicas 0."""
    floors = {m: c["deployment_config"]["autoscaling_config"]["min_replicas"] for m, c in run.prepared.llm_configs.items()}
    assert floors and set(floors.values()) == {0}, floors


def test_idle_cluster_runs_no_gpu_node(run):
    floor = run.idle
    assert not gpu_nodes(floor.nodes), [n.kind for n in floor.nodes]
    assert sorted(n.kind for n in floor.nodes) == sorted(_floor_kinds(run))
    assert (floor.pending_launches, floor.pending_nodes) == (0, 0)
    demands = floor.demands
    assert not demands.placement_group_demand and not demands.ray_task_actor_demand, demands
    llm_counts = {d: c for d, c in floor.serve_counts.items() if d.split("/", 1)[1].startswith("FakeLLMServer:")}
    assert llm_counts and set(llm_counts.values()) == {0}, floor.serve_counts


def test_one_request_scales_only_its_models_tier_from_zero(run):
    key = run.scenario.request_model
    tier = f"tier:{run.tier_of(key)}"
    up = run.scale_up()
    assert not up.gpu_nodes_before, [n.kind for n in up.gpu_nodes_before]
    assert up.status == 200, up.body
    assert fixed_text_of(up.body) == FIXED_TEXT, up.body
    gpu_kinds = {k for k in up.kinds_seen if k not in ("head", "system")}
    assert gpu_kinds == {tier}, f"GPU node kinds seen while serving {key}: {sorted(gpu_kinds)}; expected only {tier}"
    assert up.max_nodes_per_kind[tier] == 1, up.max_nodes_per_kind
    assert up.pending_after == (0, 0), "the autoscaler still wanted nodes after the request was served"
    kinds = {n.node_id: n.kind for n in up.nodes_at_reply}
    _, deployment = run.model_deployment(run.model_id(key))
    nodes = _model_replicas(up.replicas_at_reply, deployment)
    assert nodes and {kinds[n] for n in nodes} == {tier}, (deployment, nodes, kinds)
    # The node the autoscaler launched advertises its node type's GPUs and placement resources.
    launched = next(n for n in up.nodes_at_reply if n.kind == tier)
    wanted = run.fitted.worker_types[run.tier_of(key)]["resources"]
    assert {k: launched.resources.get(k) for k in wanted if k == "GPU" or k.startswith(PLACEMENT_PREFIXES)} == {
        k: v for k, v in wanted.items() if k == "GPU" or k.startswith(PLACEMENT_PREFIXES)}, launched.resources


def test_after_the_idle_timeout_the_cluster_is_back_at_its_floor(run):
    floor = run.back_to_floor(timeout_s=TEST_IDLE_TIMEOUT_S + 90)
    assert not gpu_nodes(floor.nodes), [n.kind for n in floor.nodes]
    assert sorted(n.kind for n in floor.nodes) == sorted(_floor_kinds(run))
    _, deployment = run.model_deployment(run.model_id(run.scenario.request_model))
    assert not _model_replicas(floor.replicas, deployment), floor.replicas


def test_tensor_parallel_2_replica_holds_both_bundles_on_one_node_of_its_tier(run):
    key = run.scenario.request_model
    config = run.prepared.llm_configs[run.model_id(key)]
    tp = int((config.get("engine_kwargs") or {}).get("tensor_parallel_size", 1))
    if tp < 2:
        pytest.skip(f"{run.scenario.id} requests {key}, tensor_parallel_size {tp}")
    tier = run.tier_of(key)
    up = run.scale_up()
    # Ray's derivation for the model (LLMServer.get_deployment_options): one GPU bundle per TP rank.
    assert len(up.derived_bundles) == tp and all(b.get("GPU") == 1 for b in up.derived_bundles), up.derived_bundles
    assert up.derived_strategy == "STRICT_PACK"
    live = [pg for pg in up.placement_groups
            if [dict(b) for b in pg["bundles"].values()] == [{k: float(v) for k, v in b.items()} for b in up.derived_bundles]]
    assert len(live) == 1, (up.derived_bundles, up.placement_groups)
    pg = live[0]
    assert pg["strategy"] == "STRICT_PACK"
    pg_nodes = set(pg["bundles_to_node_id"].values())
    assert len(pg_nodes) == 1, pg["bundles_to_node_id"]
    node = next(n for n in up.nodes_at_reply if n.node_id in pg_nodes)
    assert node.kind == f"tier:{tier}" and node.gpus == run.values["tiers"][tier]["gpusPerWorker"] == tp, node
    # The engine really holds both bundles there: one GPU worker per bundle, on that node, in that group.
    assert sorted(p.get("bundle_index", -1) for p in up.engine_placement) == list(range(tp)), up.engine_placement
    assert {p["node_id"] for p in up.engine_placement} == pg_nodes, up.engine_placement
    assert {p["placement_group_id"] for p in up.engine_placement} == {pg["placement_group_id"]}


def test_cpu_only_replicas_ask_for_and_sit_on_the_head_or_system_node(run):
    """A CPU-only replica can never keep a GPU node up: it asks for rayllm-head / rayllm-system."""
    pinned = "system" if run.system_group else "head"
    resource = f"rayllm-{pinned}"
    cpu_only_apps = []
    for app in run.prepared.serve_config["applications"]:
        args = app.get("args") or {}
        if app["import_path"] == GATEWAY_IMPORT_PATH:
            assert resource in (args.get("cpu_placement") or {}), (app["name"], args.get("cpu_placement"))
            cpu_only_apps.append(app["name"])
        elif app["import_path"] in LLM_IMPORT_PATHS and "llm_configs" in args:  # Ray's OpenAI ingress app
            actor = (args.get("ingress_deployment_config") or {}).get("ray_actor_options") or {}
            assert actor.get("num_cpus") == 0 and resource in (actor.get("resources") or {}), (app["name"], actor)
            cpu_only_apps.append(app["name"])
    assert cpu_only_apps, "no CPU-only ingress in this render"

    def cpu_only(replica_class: str) -> bool:  # "ServeReplica:<app>:<deployment>"; models are Ray's LLMServer
        return not replica_class.split(":", 2)[2].startswith("FakeLLMServer:")

    # Live, idle: every replica left (models are at zero) sits on the pinned node. (Ray's OpenAI
    # ingress itself scales to zero when every model does, so dev has none at idle.)
    kinds = {n.node_id: n.kind for n in run.idle.nodes}
    placed = {name: {kinds.get(n, "gone") for n in nodes} for name, nodes in run.idle.replicas.items()}
    assert all(cpu_only(name) and k == {pinned} for name, k in placed.items()), placed
    # Live, serving: the ingress replicas that carried the request sit on the pinned node, and
    # the GPU node holds the model's replica only.
    up = run.scale_up()
    kinds = {n.node_id: n.kind for n in up.nodes_at_reply}
    ingress = {name: {kinds.get(n, "gone") for n in nodes} for name, nodes in up.replicas_at_reply.items()
               if cpu_only(name) and name.split(":")[1] in cpu_only_apps}
    assert ingress and all(k == {pinned} for k in ingress.values()), up.replicas_at_reply
    gpu_ids = {n.node_id for n in gpu_nodes(up.nodes_at_reply)}
    _, deployment = run.model_deployment(run.model_id(run.scenario.request_model))
    on_gpu = {name for name, nodes in up.replicas_at_reply.items() if set(nodes) & gpu_ids}
    assert on_gpu == {name for name in up.replicas_at_reply if name.endswith(":" + deployment)}, on_gpu
