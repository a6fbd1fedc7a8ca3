"""What the chart renders for the model cache, LoRA adapters and request routers, read the way
Kubernetes, KubeRay and Ray Serve LLM read it (the pods' Ray judges the model files in
tests/pods; the real serving path is tests/e2e/test_serving_features.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from ..cli.helpers import cli
from ..conftest import CHART, docs_of, helm_template, rayservice_of
from ..kuberay_rules import rayservice_errors

CI = CHART / "ci"


def _model_files(docs):
    files = {}
    for d in docs:
        if d.get("kind") == "ConfigMap" and "-models-" in d["metadata"]["name"]:
            for key, text in (d.get("data") or {}).items():
                files[key.split(".", 1)[0]] = yaml.safe_load(text)
    return files


def _groups(docs):
    cluster = rayservice_of(docs)["spec"]["rayClusterConfig"]
    return {g["groupName"]: g for g in cluster.get("workerGroupSpecs") or []}, cluster["headGroupSpec"]


# ---------------------------------------------------------------- model cache

def test_model_cache_claim_job_and_mounts(helm):
    from rayllm_cli.checks_crd import validate_manifest

    docs = docs_of(helm_template(helm, [CI / "model-cache-values.yaml"]).stdout)
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "llm-ray-llm-model-cache"
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "efs-sc",
                           "resources": {"requests": {"storage": "50Gi"}}}
    # the cached model's source is the path on the volume, where the Job puts the Hub id's files
    assert _model_files(docs)["tiny-chat"]["model_loading_config"]["model_source"] == \
        "/models/Qwen/Qwen2.5-0.5B-Instruct"
    groups, head = _groups(docs)
    mounts = {name: [m for m in g["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "model-cache"]
              for name, g in groups.items()}
    # only the tier of a cached model mounts it, read-only; not the head, not the other tier
    assert mounts == {"small": [{"name": "model-cache", "mountPath": "/models", "readOnly": True}], "spare": []}
    (volume,) = [v for v in groups["small"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"]
    assert volume["persistentVolumeClaim"] == {"claimName": "llm-ray-llm-model-cache", "readOnly": True}
    assert "model-cache" not in json.dumps(head)
    assert list(validate_manifest(rayservice_of(docs))) == [] and rayservice_errors(rayservice_of(docs)) == []

    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert job["metadata"]["name"].startswith("llm-ray-llm-prepull-") and len(job["metadata"]["name"]) <= 63
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "rayllm_runtime.model_cache"]
    env = {e["name"]: e for e in c["env"]}
    assert json.loads(env["RAYLLM_CACHE_MODELS"]["value"]) == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert env["RAYLLM_CACHE_ROOT"]["value"] == "/models"
    # the token only as a reference to its Secret
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hf-token", "key": "token", "optional": False}}}
    assert {m["mountPath"]: m.get("readOnly", False) for m in c["volumeMounts"]} == {
        "/models": False, "/tmp": False, "/home/ray/rayllm/runtime": True}
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False


def test_prepull_job_is_renamed_when_what_it_downloads_changes(helm4):
    def job_name(*sets):
        docs = docs_of(helm_template(helm4, [CI / "model-cache-values.yaml"], list(sets)).stdout)
        return [d for d in docs if d["kind"] == "Job"][0]["metadata"]["name"]

    same = job_name()
    assert job_name("models.tiny-chat.engine_kwargs.max_num_seqs=4") == same  # an engine setting: same Job
    assert job_name("models.tiny-chat.model_loading_config.model_source=Qwen/Qwen2.5-1.5B-Instruct") != same


def test_existing_claim_and_no_prepull(helm4):
    docs = docs_of(helm_template(helm4, [CI / "model-cache-values.yaml"], [
        "modelCache.existingClaim=shared-weights", "modelCache.prePull.enabled=false"]).stdout)
    assert not [d for d in docs if d["kind"] in ("PersistentVolumeClaim", "Job")]
    groups, _ = _groups(docs)
    (volume,) = [v for v in groups["small"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"]
    assert volume["persistentVolumeClaim"]["claimName"] == "shared-weights"


def test_a_model_source_on_the_volume_mounts_it_without_prepull(helm4):
    docs = docs_of(helm_template(helm4, [CI / "model-cache-values.yaml"], [
        "models.tiny-chat.cached=false", "models.tiny-chat.model_loading_config.model_source=/models/own/weights"]).stdout)
    assert _model_files(docs)["tiny-chat"]["model_loading_config"]["model_source"] == "/models/own/weights"
    assert not [d for d in docs if d["kind"] == "Job"]  # nothing to download
    groups, _ = _groups(docs)
    assert any(v["name"] == "model-cache" for v in groups["small"]["template"]["spec"]["volumes"])


@pytest.mark.parametrize("sets, fragment", [
    (["modelCache.enabled=false"], "models.tiny-chat.cached"),
    (["tiers.small.modelCache=false"], "models.tiny-chat.tier"),
    (["models.tiny-chat.model_loading_config.model_source=s3://bucket/qwen"],
     "models.tiny-chat.model_loading_config.model_source"),
], ids=["cache-off", "tier-opts-out", "not-a-hub-id"])
def test_a_cached_model_without_its_volume_fails_helm_and_validate(helm4, sets, fragment):
    proc = helm_template(helm4, [CI / "model-cache-values.yaml"], sets, check=False)
    assert proc.returncode != 0 and f"[RL019] {fragment}" in proc.stderr, proc.stderr[-600:]
    code, out, err = cli("validate", "-f", str(CI / "model-cache-values.yaml"), *[a for s in sets for a in ("--set", s)])
    assert code == 1 and "RL019" in out and fragment in out, out + err


def test_single_node_claim_for_many_workers_warns():
    code, out, _ = cli("validate", "-f", str(CI / "model-cache-values.yaml"), "--set",
                       "modelCache.accessModes={ReadWriteOnce}")
    assert code == 0 and any(line.startswith("WARNING") and "[RL019] modelCache.accessModes" in line
                             for line in out.splitlines()), out


def test_plan_reports_the_disk_each_cache_needs():
    code, out, _ = cli("plan", "-f", str(CI / "model-cache-values.yaml"), "-o", "json")
    cache = json.loads(out)["model_cache"]
    assert cache["size_gib"] == 50 and cache["fits"] is True
    assert cache["models"] == [{"model": "tiny-chat", "source": "Qwen/Qwen2.5-0.5B-Instruct", "pre_pulled": True,
                                "parameters_b": 0.5, "disk_gib": 1.0}]
    code, out, _ = cli("plan", "-f", str(CI / "model-cache-values.yaml"), "--set", "modelCache.size=512Mi")
    assert "needs about 1 GiB: TOO SMALL" in out


# ---------------------------------------------------------------- LoRA

def test_lora_renders_rays_lora_config_and_the_engine_switches(helm):
    docs = docs_of(helm_template(helm, [CI / "lora-values.yaml"]).stdout)
    cfg = _model_files(docs)["tiny-chat"]
    assert cfg["lora_config"] == {"dynamic_lora_loading_path": "s3://rayllm-adapters/tiny-chat",
                                  "max_num_adapters_per_replica": 4}
    assert {k: cfg["engine_kwargs"][k] for k in ("enable_lora", "max_lora_rank", "max_loras", "max_cpu_loras")} == \
        {"enable_lora": True, "max_lora_rank": 8, "max_loras": 2, "max_cpu_loras": 4}
    serve = yaml.safe_load(rayservice_of(docs)["spec"]["serveConfigV2"])
    gateway = next(a for a in serve["applications"] if a["name"] == "gateway")
    assert gateway["args"]["upstreams"] == [
        {"app": "private.tiny-private", "model_ids": ["tiny-private"], "lora_adapters": True}]


def test_explicit_engine_kwargs_win_over_the_derived_switches(helm4):
    docs = docs_of(helm_template(helm4, [CI / "lora-values.yaml"], ["models.tiny-chat.engine_kwargs.max_loras=1"]).stdout)
    assert _model_files(docs)["tiny-chat"]["engine_kwargs"]["max_loras"] == 1


@pytest.mark.parametrize("sets, fragment", [
    (["models.tiny-chat.engine_kwargs.enable_lora=false"], "models.tiny-chat.engine_kwargs.enable_lora"),
    (["models.tiny-chat.lora_config.dynamic_lora_loading_path=s3://x/y"], "models.tiny-chat.lora_config"),
    (["models.tiny-private.lora=null", "models.tiny-private.lora_config.dynamic_lora_loading_path=/mnt/loras"],
     "models.tiny-private.lora_config.dynamic_lora_loading_path"),
    (["models.tiny-private.lora=null", "models.tiny-private.lora_config.dynamic_lora_loading_path=s3://b/l"],
     "models.tiny-private.engine_kwargs.enable_lora"),
], ids=["switched-off", "twice", "local-path", "raw-without-engine-switch"])
def test_half_configured_lora_fails_helm_and_validate(helm4, sets, fragment):
    proc = helm_template(helm4, [CI / "lora-values.yaml"], sets, check=False)
    assert proc.returncode != 0 and f"[RL020] {fragment}" in proc.stderr, proc.stderr[-600:]
    code, out, err = cli("validate", "-f", str(CI / "lora-values.yaml"), *[a for s in sets for a in ("--set", s)])
    assert code == 1 and "RL020" in out and fragment in out, out + err


def test_schema_refuses_a_rank_vllm_does_not_take_and_a_local_adapter_path(helm4):
    for bad in ("models.tiny-chat.lora.maxLoraRank=12", "models.tiny-chat.lora.dynamicLoraLoadingPath=/mnt/x"):
        proc = helm_template(helm4, [CI / "lora-values.yaml"], [bad], check=False)
        assert proc.returncode != 0 and "schema" in proc.stderr, bad


# ---------------------------------------------------------------- request routers

def test_request_router_reaches_the_model_file(helm):
    docs = docs_of(helm_template(helm, [CI / "request-routing-values.yaml"]).stdout)
    router = _model_files(docs)["tiny-chat"]["deployment_config"]["request_router_config"]
    assert router == {"request_router_class": "ray.serve.llm.request_router:PrefixCacheAffinityRouter",
                      "request_router_kwargs": {"imbalanced_threshold": 8, "match_rate_threshold": 0.1}}


@pytest.mark.parametrize("sets, severity, fragment", [
    (["models.tiny-chat.deployment_config.request_router_config.request_router_kwargs.imbalance=3"], "ERROR",
     "request_router_kwargs.imbalance"),
    (["models.tiny-chat.deployment_config.request_router_config.request_router_class=ray.serve.llm.request_router:Nope"],
     "WARNING", "request_router_class"),
    (["models.tiny-chat.engine_kwargs.enable_prefix_caching=false"], "WARNING", "enable_prefix_caching"),
], ids=["unknown-kwarg", "unknown-ray-router", "prefix-cache-off"])
def test_validate_checks_router_arguments(sets, severity, fragment):
    code, out, err = cli("validate", "-f", str(CI / "request-routing-values.yaml"),
                         *[a for s in sets for a in ("--set", s)])
    assert any(line.startswith(severity) and "[RL021]" in line and fragment in line for line in out.splitlines()), out + err
    assert code == (1 if severity == "ERROR" else 0)
