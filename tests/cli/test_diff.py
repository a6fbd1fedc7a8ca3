"""`ray-llm diff OLD NEW`: each kind of change, named the way Serve and KubeRay will act on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from .helpers import cli, write

REPO = Path(__file__).resolve().parents[2]
PROD = REPO / "values" / "prod.yaml"


def diff(tmp_path: Path, change: dict, *extra: str):
    new = write(tmp_path, change, "new.yaml")
    empty = write(tmp_path, {}, "old.yaml")
    code, out, err = cli("diff", str(empty), str(new), "--base", str(PROD), "-o", "json", *extra)
    assert "Traceback" not in err, err
    return code, (json.loads(out) if out.strip().startswith("{") else None), err


def test_identical_values_are_no_difference(tmp_path):
    code, report, _ = diff(tmp_path, {})
    assert code == 0 and report["differs"] is False
    code, out, _ = cli("diff", str(PROD), str(PROD))
    assert code == 0 and "no difference" in out


def test_a_model_only_change_redeploys_that_model_alone(tmp_path):
    code, report, _ = diff(tmp_path, {"models": {"falcon3-7b": {"engine_kwargs": {"max_num_seqs": 32}}}})
    assert code == 1
    apps = report["serve"]["apps"]
    assert [(a["app"], a["change"]) for a in apps] == [("falcon.falcon3-7b", "redeployed")]
    assert apps[0]["models_changed"] == ["falcon3-7b"] and apps[0]["models_restarted_with_them"] == []
    assert report["cluster"]["change"] == "none" and report["upgrade_peak"] is None
    (cm,) = report["configmaps"]
    assert cm["configmap"].endswith("-models-falcon") and len(cm["added"]) == len(cm["removed"]) == 1


def test_a_change_in_a_shared_app_restarts_its_other_models(tmp_path):
    """A build_openai_app app versions all its models together: say which ride along."""
    code, report, _ = diff(tmp_path, {"llmApps": {"falcon": {"gateway": None, "routePrefix": "/falcon"}},
                                      "models": {"falcon3-7b": {"engine_kwargs": {"max_num_seqs": 32}}}})
    falcon = next(a for a in report["serve"]["apps"] if a["app"] == "falcon")
    assert falcon["change"] == "added"
    base = write(tmp_path, {"llmApps": {"falcon": {"gateway": None, "routePrefix": "/falcon"}}}, "shared.yaml")
    new = write(tmp_path, {"models": {"falcon3-7b": {"engine_kwargs": {"max_num_seqs": 32}}}}, "edit.yaml")
    code, out, err = cli("diff", str(base), str(new), "-f", str(PROD), "-f", str(base), "-o", "json")
    falcon = next(a for a in json.loads(out)["serve"]["apps"] if a["app"] == "falcon")
    assert falcon["change"] == "redeployed"
    assert falcon["models_changed"] == ["falcon3-7b"] and falcon["models_restarted_with_them"] == ["falcon3-1b"]


def test_a_new_family_builds_a_new_cluster_for_its_volume(tmp_path):
    code, report, _ = diff(tmp_path, {"models": {"qwen-7b": {
        "tier": "medium", "family": "qwen", "app": "falcon",
        "model_loading_config": {"model_id": "qwen2.5-7b-instruct", "model_source": "Qwen/Qwen2.5-7B-Instruct"},
        "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}}}}})
    assert code == 1 and report["cluster"]["change"] == "new cluster"
    assert "headGroupSpec.template.spec.volumes.models-qwen: added" in report["cluster"]["why"]
    assert [c["configmap"] for c in report["configmaps"] if c["change"] == "added"] == ["llm-ray-llm-models-qwen"]
    # the new cluster must start falcon3-7b (min 1) and qwen-7b (min 1) on L4s before traffic moves
    peak = report["upgrade_peak"]
    assert peak["extra_gpus_at_least"] == 2 and peak["pools"]["medium"]["node_pool"] == "cloud.google.com/gke-nodepool=l4-pool"
    assert next(a for a in report["serve"]["apps"] if a["app"] == "falcon.qwen-7b")["change"] == "added"
    # the gateway gains one upstream: the item itself is named, not two truncated lists
    gateway = next(a for a in report["serve"]["apps"] if a["app"] == "gateway")
    assert 'args.upstreams: + {"app": "falcon.qwen-7b", "model_ids": ["qwen2.5-7b-instruct"]}' in gateway["why"], gateway


def test_tier_changes_new_cluster_or_in_place(tmp_path):
    code, report, _ = diff(tmp_path, {"tiers": {"medium": {"maxReplicas": 12}}})
    # KubeRay's hash mutes replica bounds: not applied to the running cluster either (the diff says so)
    assert report["cluster"]["change"] == "replica bounds only" and not report["upgrade_peak"]
    code, report, _ = diff(tmp_path, {"tiers": {"medium": {"resources": {
        "requests": {"cpu": "10", "memory": "40Gi"}, "limits": {"cpu": "12", "memory": "44Gi"}}}}})
    assert report["cluster"]["change"] == "new cluster"
    assert report["cluster"]["why"] == ['workerGroupSpecs.medium.template.spec.containers.ray-worker.resources.limits.cpu: "11" -> "12"']
    # a tier added after the others joins the running cluster; one sorted before them moves the others
    later = {"acceleratorType": "H100", "minReplicas": 0, "maxReplicas": 1}
    _, report, _ = diff(tmp_path, {"tiers": {"zz-h100": later}})
    assert report["cluster"]["change"] == "worker groups added in place"
    assert report["cluster"]["added_groups"] == ["zz-h100"]
    _, report, _ = diff(tmp_path, {"tiers": {"aa-h100": later}})
    assert report["cluster"]["change"] == "new cluster"


def test_a_ray_version_change_builds_a_new_cluster(tmp_path):
    code, report, _ = diff(tmp_path, {"rayVersion": "2.59.0", "image": {"tag": "2.59.0-py311-cu128"}})
    assert report["ray_version"] == "2.60.0 -> 2.59.0" and report["cluster"]["change"] == "new cluster"
    assert 'rayVersion: "2.60.0" -> "2.59.0"' in report["cluster"]["why"]


def test_upgrade_strategy_none_leaves_the_cluster(tmp_path):
    code, report, _ = diff(tmp_path, {"rayService": {"upgradeStrategy": "None"},
                                      "tiers": {"small": {"pytorchCudaAllocConf": "max_split_size_mb:128"}}})
    assert report["cluster"]["change"] == "not applied" and report["upgrade_peak"] is None


def test_old_side_can_be_a_rendered_release(helm4, tmp_path):
    rendered = subprocess.run([str(helm4), "template", "llm", str(REPO / "charts/ray-llm"), "-f", str(PROD)],
                              capture_output=True, text=True, check=True).stdout
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered)
    new = write(tmp_path, yaml.safe_load(PROD.read_text()) | {"tiers": {**yaml.safe_load(PROD.read_text())["tiers"]}},
                "same.yaml")
    code, out, _ = cli("diff", str(manifest), str(new))
    assert code == 0 and "no difference" in out, out


def test_trouble_exits_2(tmp_path):
    code, _, err = cli("diff", str(tmp_path / "missing.yaml"), str(PROD))
    assert code == 2 and "Traceback" not in err
    bad = write(tmp_path, {"tiers": {"small": {"gpusPerWorker": "two"}}}, "bad.yaml")
    code, _, err = cli("diff", str(PROD), str(bad))
    assert code == 2 and "gpusPerWorker" in err


def test_incremental_strategy_peak_is_capped_by_max_surge(tmp_path):
    """Under NewClusterWithIncrementalUpgrade the new cluster grows at most maxSurgePercent beyond the
    serving capacity at a time: the peak counts that share of the nodes, not a second full cluster."""
    scenario = REPO / "charts" / "ray-llm" / "ci" / "incremental-upgrade-values.yaml"
    bump = write(tmp_path, {"tiers": {"medium": {"minReplicas": 4, "resources": {
        "requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "12", "memory": "32Gi"}}}}}, "b.yaml")
    floor = write(tmp_path, {"tiers": {"medium": {"minReplicas": 4}}}, "a.yaml")
    code, out, err = cli("diff", str(floor), str(bump), "--base", str(scenario), "-o", "json")
    report = json.loads(out)
    assert code == 1 and report["cluster"]["change"] == "new cluster, incrementally"
    assert any("limits.cpu" in why for why in report["cluster"]["why"])
    # 4 medium nodes serve; a 25% surge needs 1 more at a time, not 4
    assert report["upgrade_peak"]["pools"]["medium"] == {"nodes": 1, "gpus": 1, "node_pool": "(any node)"}
    code, out, _ = cli("diff", str(floor), str(bump), "--base", str(scenario), "--set",
                       "rayService.upgradeStrategy=NewCluster", "-o", "json")
    assert json.loads(out)["upgrade_peak"]["pools"]["medium"]["nodes"] == 4


def test_initial_replicas_count_in_the_new_clusters_start(tmp_path):
    """Serve starts an app at initial_replicas: a model at min 0 but initial 2 needs two workers of its
    tier before the new cluster can take traffic (plan's workers_needed_at_start)."""
    code, report, _ = diff(tmp_path, {
        "rayVersion": "2.59.0", "image": {"tag": "2.59.0-py311-cu128"},
        "models": {"falcon3-1b": {"deployment_config": {"autoscaling_config": {
            "min_replicas": 0, "max_replicas": 5, "initial_replicas": 2}}}}})
    assert code == 1 and report["cluster"]["change"] == "new cluster"
    assert report["upgrade_peak"]["pools"]["small"] == {
        "nodes": 2, "gpus": 2, "node_pool": report["upgrade_peak"]["pools"]["small"]["node_pool"]}
