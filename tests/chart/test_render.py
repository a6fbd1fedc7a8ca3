"""What the chart renders: tiers, bundles, apps and services, checked with Ray's own models where they apply."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from ..conftest import (
    CHART,
    VALUES_DIR,
    VALUES_FILES,
    docs_of,
    helm_template,
    model_files_of,
    rayservice_of,
    serve_config_of,
    write_values,
)

NEEDS_RAY_LLM = "ray[serve,llm] is needed to check configs with Ray's models"


def _worker_resources(group: dict) -> dict:
    """The custom resources a worker group declares to Ray: the group's `resources` map
    (KubeRay >= 1.5 turns it into `ray start --resources='{...}'`; Ray's autoscaler reads it)."""
    assert "resources" not in group["rayStartParams"], "the escaped start-parameter form KubeRay cannot parse"
    return {name: float(amount) for name, amount in group["resources"].items()}


@pytest.fixture(scope="module")
def prod_docs(helm4):
    return docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)


@pytest.mark.needs_ray
@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_serve_config_and_model_configs_parse_with_rays_models(helm4, values):
    pytest.importorskip("ray.serve.llm", reason=NEEDS_RAY_LLM)
    from ray.serve.llm import LLMConfig
    from ray.serve.schema import ServeDeploySchema

    docs = docs_of(helm_template(helm4, [values]).stdout)
    ServeDeploySchema.model_validate(serve_config_of(docs))
    files = model_files_of(docs)
    assert files, "every values file configures at least one model"
    for name, text in files.items():
        LLMConfig.model_validate(yaml.safe_load(text)), name


@pytest.mark.needs_ray
def test_prod_tiers_bundles_and_hybrid_apps(prod_docs):
    pytest.importorskip("ray.serve.llm", reason=NEEDS_RAY_LLM)
    from ray.serve.llm import LLMConfig

    rs = rayservice_of(prod_docs)
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert len(groups) >= 4
    assert {"small", "medium", "large", "xlarge"} <= set(groups)
    prod = yaml.safe_load((VALUES_DIR / "prod.yaml").read_text())

    files = model_files_of(prod_docs)
    by_model = {key.split("/")[1].split(".")[0]: yaml.safe_load(text) for key, text in files.items()}
    assert set(by_model) == set(prod["models"])
    for model_name, cfg in by_model.items():
        tier = prod["models"][model_name]["tier"]
        tier_resource = f"rayllm-tier-{tier}"
        engine = LLMConfig.model_validate(cfg).get_engine_config()
        bundles = engine.placement_bundles
        kwargs = cfg.get("engine_kwargs", {})
        parallel = kwargs.get("tensor_parallel_size", 1) * kwargs.get("pipeline_parallel_size", 1)
        # Ray's own engine config: one bundle per GPU of tp x pp, each pinned to the tier.
        assert len(bundles) == parallel
        assert sum(b.get("GPU", 0) for b in bundles) == parallel
        for bundle in bundles:
            assert bundle.get(tier_resource, 0) > 0, (model_name, bundle)
            # Every resource a bundle asks for is declared by that tier's workers (scale from zero).
            declared = _worker_resources(groups[tier])
            for res in bundle:
                if res not in ("CPU", "GPU", "memory"):
                    assert res in declared, (model_name, res, declared)
        assert cfg["accelerator_type"] == prod["tiers"][tier]["acceleratorType"]
        assert int(groups[tier]["resources"]["GPU"]) >= parallel

    serve = serve_config_of(prod_docs)
    imports = [a["import_path"] for a in serve["applications"]]
    # behind the gateway: one LLMServer app per model, with no route of its own
    assert imports.count("rayllm_runtime.serve_llm:build_llm_app") == len(prod["models"])
    assert "rayllm_runtime.apps:build_gateway" in imports
    routes = [a["route_prefix"] for a in serve["applications"] if a["route_prefix"]]
    assert routes == ["/gateway"]


def test_head_and_worker_pod_shape(prod_docs):
    rs = rayservice_of(prod_docs)
    cluster = rs["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["resources"]["GPU"] == "0" and "num-gpus" not in head["rayStartParams"]
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {8265, 6379, 10001, 8000, 8080} <= ports
    for params in [head["rayStartParams"]] + [g["rayStartParams"] for g in cluster["workerGroupSpecs"]]:
        assert all(isinstance(v, str) for v in params.values()), params
    assert rs["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    assert "serviceUnhealthySecondThreshold" not in rs["spec"]
    assert "deploymentUnhealthySecondThreshold" not in rs["spec"]
    assert cluster["rayVersion"] in head["template"]["spec"]["containers"][0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] == 0  # prod tiers all scale from zero
        container = group["template"]["spec"]["containers"][0]
        # KubeRay injects its Serve-aware probes only into a container with none of its own.
        assert "readinessProbe" not in container and "livenessProbe" not in container
        env = {e["name"]: e for e in container["env"]}
        assert "PYTORCH_CUDA_ALLOC_CONF" in env and env["TOKENIZERS_PARALLELISM"]["value"] == "false"
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "huggingface-secret",
            "key": "token",
            "optional": False,
        }
        gpus = int(group["resources"]["GPU"])
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
        spec = group["template"]["spec"]
        assert spec["nodeSelector"] and spec["tolerations"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/home/ray/rayllm/models/falcon" in mounts


def test_serve_service_defaults_to_cluster_ip_and_ingress_is_optional(helm4, tmp_path):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "dev.yaml"]).stdout)
    rs = rayservice_of(docs)
    assert rs["spec"]["serveService"]["spec"]["type"] == "ClusterIP"
    assert not [d for d in docs if d["kind"] == "Ingress"]
    docs = docs_of(
        helm_template(
            helm4,
            [VALUES_DIR / "dev.yaml"],
            sets=["serve.ingress.enabled=true", "serve.ingress.host=llm.example.com", "serve.service.type=LoadBalancer"],
        ).stdout
    )
    ingress = [d for d in docs if d["kind"] == "Ingress"][0]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == rayservice_of(docs)["spec"]["serveService"]["metadata"]["name"]
    assert rayservice_of(docs)["spec"]["serveService"]["spec"]["type"] == "LoadBalancer"


def test_disabled_tier_and_model_vanish(helm4):
    docs = docs_of(
        helm_template(
            helm4, [VALUES_DIR / "prod.yaml"], sets=["tiers.xlarge.disabled=true", "models.falcon-40b.disabled=true"]
        ).stdout
    )
    groups = [g["groupName"] for g in rayservice_of(docs)["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    assert "xlarge" not in groups
    assert not [k for k in model_files_of(docs) if "falcon-40b" in k]


def test_model_on_disabled_tier_fails_with_one_gathered_message(helm4):
    proc = helm_template(
        helm4,
        [VALUES_DIR / "prod.yaml"],
        sets=["tiers.xlarge.disabled=true", "models.falcon3-10b.engine_kwargs.tensor_parallel_size=4"],
        check=False,
    )
    assert proc.returncode != 0
    assert "models.falcon-40b.tier" in proc.stderr
    assert "models.falcon3-10b.engine_kwargs" in proc.stderr  # both failures in one message


def test_two_renders_are_identical_and_templates_use_no_cluster_or_clock(helm):
    a = helm_template(helm, [VALUES_DIR / "prod.yaml"]).stdout
    b = helm_template(helm, [VALUES_DIR / "prod.yaml"]).stdout
    assert a == b
    banned = re.compile(r"\b(lookup|now|randAlphaNum|randAlpha|randNumeric|randAscii|randInt|uuidv4|genCA|genPrivateKey|genSelfSignedCert|date|dateInZone|unixEpoch)\b")
    for tpl in (CHART / "templates").rglob("*"):
        if tpl.is_file():
            for lineno, line in enumerate(tpl.read_text().splitlines(), 1):
                code = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", line)
                assert not banned.search(code), f"{tpl.name}:{lineno}: {line.strip()}"
