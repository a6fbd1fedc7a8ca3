"""The Flux and Argo CD examples render through the chart as those tools would, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, docs_of, helm_template, rayservice_of
from .helpers import builtin_errors, crd_errors

EXAMPLES = REPO / "examples"


def _load_all(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind(directory: Path):
    out = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in _load_all(path):
            out.setdefault(doc["kind"], []).append(doc)
    return out


def deep_merge(base: dict, override: dict) -> dict:
    """Flux's merge of values layers: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_flux_helmrelease_renders(helm4, tmp_path):
    objs = _by_kind(EXAMPLES / "flux")
    (hr,) = objs["HelmRelease"]
    (repo,) = objs["GitRepository"]
    assert hr["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    chart = hr["spec"]["chart"]["spec"]
    ref = chart["sourceRef"]
    assert ref["kind"] == "GitRepository" and ref["name"] == repo["metadata"]["name"]
    assert ref.get("namespace", hr["metadata"]["namespace"]) == repo["metadata"]["namespace"]
    assert (REPO / chart["chart"] / "Chart.yaml").is_file()
    configmaps = {c["metadata"]["name"]: c for c in objs["ConfigMap"]}
    values: dict = {}
    for source in hr["spec"]["valuesFrom"]:
        assert source["kind"] == "ConfigMap"
        cm = configmaps[source["name"]]
        assert cm["metadata"]["namespace"] == hr["metadata"]["namespace"]
        layer = yaml.safe_load(cm["data"][source.get("valuesKey", "values.yaml")])
        values = deep_merge(values, layer)
    values = deep_merge(values, hr["spec"].get("values") or {})
    # the inline layer really changed something the ConfigMap set
    assert values["tiers"]["medium"]["maxReplicas"] == 4
    assert values["tiers"]["medium"]["acceleratorType"] == "L4"
    proc = helm_template(helm4, [_write(tmp_path, "flux-values.yaml", values)], release=hr["spec"]["releaseName"])
    docs = docs_of(proc.stdout)
    rs = rayservice_of(docs)
    assert crd_errors(rs) == []
    assert builtin_errors(docs) == []
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups["medium"]["maxReplicas"] == 4
    assert any(d["kind"] == "CronJob" for d in docs)


def test_argocd_application_renders(helm4, tmp_path):
    (app,) = _load_all(EXAMPLES / "argocd" / "application.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    chart_dir = REPO / source["path"]
    assert (chart_dir / "Chart.yaml").is_file()
    helm = source["helm"]
    value_files = [(chart_dir / f).resolve() for f in helm.get("valueFiles", [])]
    for f in value_files:
        assert f.is_file() and REPO in f.parents, f  # inside the same repository
    # Argo CD passes valueFiles in order, then valuesObject as the last values file.
    files = value_files + [_write(tmp_path, "values-object.yaml", helm["valuesObject"])]
    proc = helm_template(helm4, files, release=helm["releaseName"])
    docs = docs_of(proc.stdout)
    rs = rayservice_of(docs)
    assert crd_errors(rs) == []
    assert builtin_errors(docs) == []
    assert rs["metadata"]["labels"]["team"] == "ml-platform"
    cron = {d["metadata"]["name"]: d["spec"]["schedule"] for d in docs if d["kind"] == "CronJob"}
    assert sorted(cron.values()) == ["0 21 * * 1-5", "0 6 * * 1-5"]
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert "ServerSideApply=true" in options and "RespectIgnoreDifferences=true" in options
    assert {"group": "ray.io", "kind": "RayService", "jsonPointers": ["/spec/suspend"]} in app["spec"]["ignoreDifferences"]


def test_merge_matches_helms_own_layering(helm4, tmp_path):
    """Flux's single merged file and Helm's chained -f files give the same release."""
    objs = _by_kind(EXAMPLES / "flux")
    (hr,) = objs["HelmRelease"]
    cm = objs["ConfigMap"][0]
    base = yaml.safe_load(cm["data"]["values.yaml"])
    merged = _write(tmp_path, "merged.yaml", deep_merge(base, hr["spec"]["values"]))
    chained = [_write(tmp_path, "a.yaml", base), _write(tmp_path, "b.yaml", hr["spec"]["values"])]
    assert helm_template(helm4, [merged]).stdout == helm_template(helm4, chained).stdout
