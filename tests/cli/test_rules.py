"""Every cross-field rule fires on a broken file and stays quiet on a correct one."""

from __future__ import annotations

import pytest

from .helpers import base, findings, rule_hits

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_correct_values_have_no_findings(tmp_path):
    assert findings(tmp_path, base()) == []


def test_rules_registry_lists_every_rule():
    from rayllm_cli.rules import RULES

    assert [r.id for r in RULES] == [f"RL{i:03d}" for i in range(1, 22)]


# ---------------------------------------------------------------- RL001


def test_rl001_missing_and_disabled_tier_and_app(tmp_path):
    v = base()
    v["models"]["qwen"]["tier"] = "nope"
    v["tiers"]["large"]["disabled"] = True
    v["models"]["qwen"]["app"] = "missing-app"
    found = findings(tmp_path, v)
    paths = {f["path"]: f for f in rule_hits(found, "RL001", "error")}
    assert "models.qwen.tier" in paths and "missing" in paths["models.qwen.tier"]["message"]
    assert "disabled" in paths["models.falcon.tier"]["message"]
    assert "models.qwen.app" in paths
    assert paths["models.qwen.tier"]["origin"].endswith("values.yaml:18") or ":" in paths["models.qwen.tier"]["origin"]


def test_rl001_disabled_app_and_custom_app_tier(tmp_path):
    v = base()
    v["llmApps"]["chat"]["disabled"] = True
    v["customApps"] = {"gw": {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw",
                              "args": {"tier": "ghost", "upstreams": [{"model_ids": ["a"], "base_url": "http://x"}]}}}
    found = rule_hits(findings(tmp_path, v), "RL001")
    assert {f["path"] for f in found} >= {"models.qwen.app", "customApps.gw.args.tier"}


def test_rl001_disabled_model_is_ignored(tmp_path):
    v = base()
    v["models"]["qwen"]["tier"] = "nope"
    v["models"]["qwen"]["disabled"] = True
    assert rule_hits(findings(tmp_path, v), "RL001") == []


# ---------------------------------------------------------------- RL002


def test_rl002_duplicates(tmp_path):
    v = base()
    v["models"]["falcon"]["model_loading_config"]["model_id"] = "qwen-0.5b"
    v["llmApps"]["big"]["routePrefix"] = "/chat"
    v["customApps"] = {"chat": {"import_path": "mypkg.app:build", "route_prefix": "/other",
                                "runtime_env": {"working_dir": "s3://b/x.zip"}}}
    found = rule_hits(findings(tmp_path, v), "RL002", "error")
    paths = {f["path"] for f in found}
    assert "models.falcon.model_loading_config.model_id" in paths
    assert "customApps.chat" in paths
    assert any(p.endswith("routePrefix") for p in paths)


def test_rl002_root_prefix_and_nested_prefix_warn(tmp_path):
    v = base()
    v["llmApps"]["chat"]["routePrefix"] = "/"
    v["llmApps"]["big"]["routePrefix"] = "/big"
    v["customApps"] = {"gw": {"import_path": "mypkg.app:build", "route_prefix": "/big/admin",
                              "runtime_env": {"working_dir": "s3://b/x.zip"}}}
    found = rule_hits(findings(tmp_path, v), "RL002", "warning")
    msgs = {f["path"]: f["message"] for f in found}
    assert "catches every path" in msgs["llmApps.chat.routePrefix"]
    assert "nested" in msgs["customApps.gw.route_prefix"]


# ---------------------------------------------------------------- RL003 / RL004


def test_rl003_parallelism_above_gpus_per_worker(tmp_path):
    v = base()
    v["models"]["falcon"]["engine_kwargs"]["tensor_parallel_size"] = 4
    found = rule_hits(findings(tmp_path, v), "RL003", "error")
    assert [f["path"] for f in found] == ["models.falcon.engine_kwargs.tensor_parallel_size"]


def test_rl003_fractional_shares_overcommit_single_worker(tmp_path):
    v = base()
    v["tiers"]["small"]["maxReplicas"] = 1
    for name in ("a", "b"):
        m = {"tier": "small", "family": "qwen", "app": "chat", "gpuShare": 0.6,
             "model_loading_config": {"model_id": f"m-{name}"},
             "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}}
        v["models"][name] = m
    del v["models"]["qwen"]
    found = rule_hits(findings(tmp_path, v), "RL003", "error")
    assert found and found[0]["path"] == "tiers.small.gpusPerWorker"
    v["models"]["b"]["gpuShare"] = 0.4
    assert rule_hits(findings(tmp_path, v), "RL003") == []


def test_rl004_max_and_min_capacity(tmp_path):
    v = base()
    v["models"]["falcon"]["deployment_config"]["autoscaling_config"]["max_replicas"] = 3
    found = rule_hits(findings(tmp_path, v), "RL004", "error")
    assert found and "max_replicas" in found[0]["message"] and found[0]["path"] == "tiers.large.maxReplicas"
    v["models"]["falcon"]["deployment_config"]["autoscaling_config"].update(min_replicas=3, max_replicas=3)
    found = rule_hits(findings(tmp_path, v), "RL004", "error")
    assert found and "never" in found[0]["message"]


def test_rl004_num_replicas_counts_when_not_autoscaling(tmp_path):
    v = base()
    v["models"]["falcon"]["deployment_config"] = {"num_replicas": 3}
    assert rule_hits(findings(tmp_path, v), "RL004", "error")


# ---------------------------------------------------------------- RL005


def test_rl005_bounds(tmp_path):
    v = base()
    auto = v["models"]["qwen"]["deployment_config"]["autoscaling_config"]
    auto.update(min_replicas=2, max_replicas=1, target_ongoing_requests=32)
    found = findings(tmp_path, v)
    paths = {f["path"] for f in rule_hits(found, "RL005", "error")}
    assert "models.qwen.deployment_config.autoscaling_config.min_replicas" in paths
    assert "models.qwen.deployment_config.autoscaling_config.target_ongoing_requests" in paths
    # the models' own validators are folded into these findings, not repeated
    assert not [f for f in found if f["rule"] == "schema" and "min_replicas" in f["message"]]


# ---------------------------------------------------------------- RL006


def test_rl006_unknown_engine_kwarg_with_suggestion(tmp_path):
    v = base()
    v["models"]["qwen"]["engine_kwargs"]["gpu_memory_utilisation"] = 0.5
    found = rule_hits(findings(tmp_path, v), "RL006", "error")
    assert len(found) == 1 and "gpu_memory_utilization" in found[0]["fix"]


@pytest.mark.needs_ray  # imports vLLM
def test_rl006_shipped_list_matches_installed_vllm():
    import importlib.util

    from rayllm_cli.rules.engine import installed_engine_args, shipped_engine_args

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    installed = installed_engine_args()
    assert installed is not None
    assert shipped_engine_args()[1] <= installed[1] or installed[0] != shipped_engine_args()[0]


def test_rl012_removed_engine_kwarg_names_replacement(tmp_path):
    v = base()
    v["models"]["qwen"]["engine_kwargs"]["disable_log_requests"] = True
    found = rule_hits(findings(tmp_path, v), "RL012", "warning")
    assert found and "enable_log_requests" in found[0]["expected"]


# ---------------------------------------------------------------- RL007


def test_rl007_bfloat16_on_t4(tmp_path):
    v = base()
    v["models"]["qwen"]["engine_kwargs"]["dtype"] = "bfloat16"
    found = rule_hits(findings(tmp_path, v), "RL007", "error")
    assert [f["path"] for f in found] == ["models.qwen.engine_kwargs.dtype"]


def test_rl007_max_model_len_above_known_context(tmp_path):
    v = base()
    v["models"]["qwen"]["engine_kwargs"]["max_model_len"] = 65536
    found = rule_hits(findings(tmp_path, v), "RL007", "error")
    assert [f["path"] for f in found] == ["models.qwen.engine_kwargs.max_model_len"]
    v["models"]["qwen"]["model_loading_config"]["model_source"] = "someone/unknown-model"
    assert rule_hits(findings(tmp_path, v), "RL007") == []


# ---------------------------------------------------------------- RL008


@pytest.mark.parametrize("env", [{"working_dir": "./src"}, {"py_modules": ["s3://ok/a.zip", "/home/me/mod"]}])
def test_rl008_local_paths(tmp_path, env):
    v = base()
    v["models"]["qwen"]["runtime_env"] = env
    found = rule_hits(findings(tmp_path, v), "RL008", "error")
    assert len(found) == 1 and "remote URI" in found[0]["expected"]


def test_rl008_remote_uris_pass(tmp_path):
    v = base()
    v["models"]["qwen"]["runtime_env"] = {"working_dir": "https://example.com/x.zip", "py_modules": ["gs://b/m.zip"]}
    assert rule_hits(findings(tmp_path, v), "RL008") == []


# ---------------------------------------------------------------- RL009


def test_rl009_inline_secrets_masked(tmp_path):
    secret = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    v = base()
    v["models"]["qwen"]["runtime_env"] = {"env_vars": {"HF_TOKEN": secret}}
    v["tiers"]["small"]["env"] = [{"name": "DB_PASSWORD", "value": "hunter2hunter2"}]
    v["models"]["falcon"]["model_loading_config"]["tokenizer_source"] = f"x-{secret}"
    code_found = findings(tmp_path, v)
    found = rule_hits(code_found, "RL009", "error")
    paths = {f["path"] for f in found}
    assert {"models.qwen.runtime_env.env_vars.HF_TOKEN", "tiers.small.env[0].value",
            "models.falcon.model_loading_config.tokenizer_source"} <= paths
    import json

    assert secret not in json.dumps(code_found) and "hunter2hunter2" not in json.dumps(code_found)


def test_rl009_secret_refs_pass(tmp_path):
    v = base()
    v["tiers"]["small"]["env"] = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    v["huggingFaceToken"] = {"secretName": "hf", "secretKey": "token"}
    assert rule_hits(findings(tmp_path, v), "RL009") == []


# ---------------------------------------------------------------- RL010


def test_rl010_bad_import_paths(tmp_path):
    v = base()
    v["customApps"] = {
        "gw": {"import_path": "rayllm_runtime.apps:build_gatway", "route_prefix": "/gw"},
        "nomod": {"import_path": "rayllm_runtime.nothere:build", "route_prefix": "/nm"},
        "ext": {"import_path": "mypkg.app:build", "route_prefix": "/ext"},
    }
    found = findings(tmp_path, v)
    errs = {f["path"]: f for f in rule_hits(found, "RL010", "error")}
    assert "build_gateway" in errs["customApps.gw.import_path"]["fix"]
    assert "customApps.nomod.import_path" in errs
    assert any(f["path"] == "customApps.ext.import_path" for f in rule_hits(found, "RL010", "warning"))


def test_rl010_args_checked_with_app_builders(tmp_path):
    from rayllm_cli.rules.apps import app_builders

    if app_builders() is None:
        pytest.skip("rayllm_runtime.apps.APP_BUILDERS not importable here")
    v = base()
    v["customApps"] = {"gw": {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw",
                              "args": {"no_such_arg": 1}}}
    found = rule_hits(findings(tmp_path, v), "RL010", "error")
    assert any(f["path"].startswith("customApps.gw.args") for f in found), found


def test_rl010_good_gateway_passes(tmp_path):
    v = base()
    v["customApps"] = {"gw": {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw",
                              "args": {"upstreams": [{"model_ids": ["qwen-0.5b"], "base_url": "http://127.0.0.1:8000/chat"}]}}}
    assert rule_hits(findings(tmp_path, v), "RL010", "error") == []


def test_rl010_colocated_gateway_model(tmp_path):
    """A colocated vllm model needs the GPU on the ingress; validate says where and how."""
    v = base()
    model = {"model_id": "qwen", "engine": "vllm", "model_source": "Qwen/Qwen2.5-0.5B-Instruct", "colocated": True}
    v["customApps"] = {"gw": {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw",
                              "args": {"models": [model]}}}
    errs = rule_hits(findings(tmp_path, v), "RL010", "error")
    assert [f["path"] for f in errs] == ["customApps.gw.args"], errs
    assert "ingress_deployment.ray_actor_options.num_gpus: 1" in errs[0]["message"]
    v["customApps"]["gw"]["args"]["ingress_deployment"] = {
        "num_replicas": 1, "ray_actor_options": {"num_gpus": 1, "accelerator_type": "L4"}}
    assert rule_hits(findings(tmp_path, v), "RL010", "error") == []


# ---------------------------------------------------------------- RL011 / RL012


def test_rl011_image_tag_vs_ray_version(tmp_path):
    v = base()
    v["rayVersion"] = "2.59.0"
    found = rule_hits(findings(tmp_path, v), "RL011", "error")
    assert [f["path"] for f in found] == ["image.tag"]
    v["image"] = {"tag": "2.59.0-py311-cu128"}
    assert rule_hits(findings(tmp_path, v), "RL011") == []


def test_rl012_deprecated_settings(tmp_path):
    v = base()
    v["rayService"] = {"serviceUnhealthySecondThreshold": 900}
    v["models"]["qwen"]["runtime_env"] = {"env_vars": {"VLLM_USE_V1": "1"}}
    v["head"] = {"env": [{"name": "RAY_SERVE_ENABLE_EXPERIMENTAL_STREAMING", "value": "1"}]}
    all_found = findings(tmp_path, v)
    removed = rule_hits(all_found, "RL012", "error")
    # A removed chart key is an error, as it is for helm (the schema forbids it).
    assert [f["path"] for f in removed] == ["rayService.serviceUnhealthySecondThreshold"]
    assert "upgradeStrategy" in removed[0]["expected"]
    found = rule_hits(all_found, "RL012", "warning")
    by_path = {f["path"]: f for f in found}
    assert "models.qwen.runtime_env.env_vars.VLLM_USE_V1" in by_path
    assert "head.env[0]" in by_path


def test_strict_turns_warnings_into_errors(tmp_path):
    from .helpers import cli, write

    v = base()
    v["models"]["qwen"]["runtime_env"] = {"env_vars": {"VLLM_USE_V1": "1"}}
    path = write(tmp_path, v)
    assert cli("validate", "-f", str(path))[0] == 0
    assert cli("validate", "-f", str(path), "--strict")[0] == 1


# ---------------------------------------------------------------- RL013 .. RL017


def _gateway(**args) -> dict:
    return {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw", "args": args}


def test_rl013_warns_when_a_gateway_forwards_to_a_route_anyone_can_call(tmp_path):
    v = base()
    v["customApps"] = {"gw": _gateway(upstreams=[{"model_ids": ["qwen-0.5b"], "base_url": "http://127.0.0.1:8000/chat"}])}
    found = rule_hits(findings(tmp_path, v), "RL013", "warning")
    assert [f["path"] for f in found] == ["customApps.gw.args.upstreams[0].base_url"]
    assert "llmApps.chat.gateway: gw" in found[0]["fix"]
    # behind the gateway instead: no route of its own, no warning (and the gateway's args gain the model)
    v["llmApps"]["chat"] = {"gateway": "gw"}
    v["customApps"]["gw"]["args"] = {}
    assert findings(tmp_path, v) == []


def test_rl014_a_cpu_only_replica_needs_a_cpu_node(tmp_path):
    v = base()
    v["head"] = {"numCpus": 0}  # replicas off the head, as prod does
    v["customApps"] = {"gw": _gateway(models=[{"model_id": "echo", "engine": "fake"}])}
    found = rule_hits(findings(tmp_path, v), "RL014", "error")
    # a CPU-engine model asks Serve's default 1 CPU; pinned to a head that offers none, it never starts
    assert [f["path"] for f in found] == ["customApps.gw.args.models[0].deployment.ray_actor_options.num_cpus"]
    assert "systemGroup" in found[0]["fix"]
    v["systemGroup"] = {"enabled": True}
    assert rule_hits(findings(tmp_path, v), "RL014") == []
    # its own placement resources: it may then land on a GPU tier only, holding that node up
    del v["systemGroup"]
    v["customApps"]["gw"]["args"]["models"][0]["deployment"] = {"ray_actor_options": {"resources": {"x": 1}}}
    found = rule_hits(findings(tmp_path, v), "RL014", "error")
    assert len(found) == 1 and "only land on a GPU tier" in found[0]["message"]


def test_rl015_groups_carry_cpu_and_memory(tmp_path):
    v = base()
    v["tiers"]["small"]["resources"] = {"requests": {"memory": "8Gi"}}
    found = rule_hits(findings(tmp_path, v), "RL015", "error")
    assert [f["path"] for f in found] == ["tiers.small.resources"] and "cpu" in found[0]["message"]
    v["tiers"]["small"]["resources"] = {"limits": {"cpu": "4", "memory": "8Gi"}}
    assert rule_hits(findings(tmp_path, v), "RL015") == []


def test_rl016_per_group_idle_timeout_needs_autoscaler_v2(tmp_path):
    v = base()
    v["tiers"]["small"]["idleTimeoutSeconds"] = 30
    assert rule_hits(findings(tmp_path, v), "RL016") == []  # v2 is the default
    v["rayService"] = {"autoscalerOptions": {"version": "v1"}}
    found = rule_hits(findings(tmp_path, v), "RL016", "error")
    assert [f["path"] for f in found] == ["tiers.small.idleTimeoutSeconds"]


def test_rl017_release_and_fullname_override(tmp_path):
    v = base()
    assert rule_hits(findings(tmp_path, v, "--release", "9lives"), "RL017", "error")
    assert rule_hits(findings(tmp_path, v, "--release", "lives"), "RL017") == []
    v["fullnameOverride"] = "Bad_Name"
    found = rule_hits(findings(tmp_path, v), "RL017", "error")
    assert [f["path"] for f in found] == ["fullnameOverride"]
