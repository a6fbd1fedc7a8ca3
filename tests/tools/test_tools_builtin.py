"""rayllm_cli.checks_builtin / checks_common / manifest_checks: built-in kinds,
YAML splitting, size limits, the combined report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rayllm_cli.checks_builtin import (
    ETCD_REQUEST_LIMIT,
    LAST_APPLIED_LIMIT,
    object_size_findings,
    validate_builtin,
)
from rayllm_cli.checks_common import ManifestParseError, split_manifests
from rayllm_cli.manifest_checks import check_rendered

REPO = Path(__file__).resolve().parents[2]

GOOD = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a.yaml": "x: 1\n"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "labels": {"app": "x"}},
     "spec": {"type": "ClusterIP", "selector": {"app": "x"},
              "ports": [{"name": "serve", "port": 8000, "targetPort": "serve", "protocol": "TCP"}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
     "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["llm.example.com"], "secretName": "t"}],
              "rules": [{"host": "llm.example.com", "http": {"paths": [
                  {"path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "s", "port": {"number": 8000}}}}]}}]}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
     "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ai"}]},
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
     "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": {
         "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "serviceAccountName": "sa",
                                                  "containers": [{"name": "c", "image": "curlimages/curl",
                                                                  "args": ["-sf", "http://s:8000/"]}]}}}}}},
]
SERVICE_MONITOR = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                   "metadata": {"name": "m"}, "spec": {"endpoints": [{"port": "metrics"}]}}


def test_builtin_kinds_pass_and_report_backend(monkeypatch):
    monkeypatch.delenv("RAYLLM_BUILTIN_BACKEND", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no kubeconform
    res = validate_builtin(GOOD + [SERVICE_MONITOR])
    assert res.backend == "kubernetes-validate" and res.kubernetes_version == "1.30.0"
    assert res.ok and res.checked == len(GOOD) and res.skipped == 1
    (notice,) = res.findings
    assert notice.severity == "notice" and notice.obj == "ServiceMonitor/m"


def test_kubernetes_validate_catches_misspelled_service_field():
    svc = json.loads(json.dumps(GOOD[1]))
    svc["spec"]["selektor"] = svc["spec"].pop("selector")
    svc["spec"]["ports"][0]["targetport"] = 8000
    res = validate_builtin([svc], backend="kubernetes-validate")
    assert sorted(f.path for f in res.errors) == ["spec.ports[0].targetport", "spec.selektor"]
    assert all(f.rule == "builtin:kubernetes-validate" and "unknown field" in f.message
               for f in res.errors)


def test_kubernetes_validate_types_required_and_metadata():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"v": 1}},
          "data": {"port": 8000}}
    rb = json.loads(json.dumps(GOOD[5]))
    del rb["roleRef"]["apiGroup"]
    ing = json.loads(json.dumps(GOOD[2]))
    ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"] = "8000"
    res = validate_builtin([cm, rb, ing], kubernetes_version="1.31")
    assert res.kubernetes_version == "1.31.0"
    assert {(f.obj, f.path) for f in res.errors} == {
        ("ConfigMap/c", "data.port"), ("ConfigMap/c", "metadata.labels.v"),
        ("RoleBinding/rb", "roleRef.apiGroup"),
        ("Ingress/i", "spec.rules[0].http.paths[0].backend.service.port.number")}


def _fake_kubeconform(tmp_path: Path, report: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "kubeconform"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, sys
        files = [a for a in sys.argv[1:] if a.endswith('.yaml')]
        assert '-strict' in sys.argv and '-output' in sys.argv
        print({report!r}.replace('FILE0', files[0]))
        sys.exit(1)
        """))
    script.chmod(0o755)
    return str(bindir)


def test_kubeconform_backend_output_is_parsed(tmp_path, monkeypatch):
    report = json.dumps({"resources": [{"filename": "FILE0", "kind": "Service", "name": "s",
                                        "version": "v1", "status": "statusInvalid", "msg": "bad",
                                        "validationErrors": [{"path": "/spec/ports/0/targetport",
                                                              "msg": "additional properties 'targetport' not allowed"}]}],
                         "summary": {"valid": 0, "invalid": 1}})
    monkeypatch.setenv("PATH", _fake_kubeconform(tmp_path, report))
    res = validate_builtin([GOOD[1]])
    assert res.backend == "kubeconform"
    (f,) = res.errors
    assert f.path == "spec.ports[0].targetport" and f.obj == "Service/s"


def test_kubeconform_offline_falls_back(tmp_path, monkeypatch):
    report = json.dumps({"resources": [{"filename": "FILE0", "status": "statusError",
                                        "msg": "could not find schema for Service"}]})
    monkeypatch.setenv("PATH", _fake_kubeconform(tmp_path, report))
    res = validate_builtin([GOOD[1]])
    assert res.backend == "kubernetes-validate" and res.ok
    assert "fell back" in res.findings[0].message
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="no kubeconform on PATH"):
        validate_builtin([GOOD[1]], backend="kubeconform")


RENDERED = """\
---
# Source: ray-llm/templates/models/configmaps.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: m
data:
  a.yaml: |
    x: 1
    ---
    y: 2
---
# Source: ray-llm/templates/serve/ingress.yaml
# (disabled: only comments)
---
# Source: ray-llm/templates/rayservice/rayservice.yaml
apiVersion: ray.io/v1
kind: RayService
metadata:
  name: llm
  labels:
    a: b
    a: c
spec:
  rayClusterConfig:
    headGroupSpec:
      template:
        spec:
          containers:
          - name: h
            image: i
...
"""


def test_split_manifests_keeps_sources_and_duplicates():
    docs = split_manifests(RENDERED)
    assert [d["kind"] for d in docs] == ["ConfigMap", "RayService"]
    assert [d.source for d in docs] == ["ray-llm/templates/models/configmaps.yaml",
                                        "ray-llm/templates/rayservice/rayservice.yaml"]
    assert docs[0]["data"]["a.yaml"] == "x: 1\n---\ny: 2\n"
    assert isinstance(docs[0], dict) and docs[1]["metadata"]["labels"] == {"a": "c"}
    assert docs[1].duplicate_keys == [(23, "a")]
    assert RENDERED.splitlines()[22].strip() == "a: c"
    assert split_manifests("") == [] and split_manifests("---\n---\n# c\n") == []


def test_split_manifests_parse_error_names_source_and_line():
    bad = "---\n# Source: chart/templates/a.yaml\napiVersion: v1\nkind: [\n"
    with pytest.raises(ManifestParseError, match=r"chart/templates/a.yaml: line \d+"):
        split_manifests(bad)
    with pytest.raises(ManifestParseError, match="expected a mapping"):
        split_manifests("- a\n- b\n")


def test_object_size_limits():
    def cm(n):
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                "data": {"k": "x" * n}}
    assert object_size_findings(cm(1000)) == []
    (warn,) = object_size_findings(cm(LAST_APPLIED_LIMIT))
    assert warn.severity == "warning" and "last-applied-configuration" in warn.message
    found = object_size_findings(cm(ETCD_REQUEST_LIMIT))
    # the 1 MiB ConfigMap data limit (tests/tools/test_tools_sizes.py) fails it too
    assert sorted(f.severity for f in found) == ["error", "error", "warning"]
    assert any("1,572,864" in f.message for f in found)


def test_check_rendered_combines_everything():
    report = check_rendered(RENDERED)
    assert report.builtin_backend in ("kubernetes-validate", "kubeconform")
    assert [(f.rule, f.origin) for f in report.errors] == [
        ("yaml", "ray-llm/templates/rayservice/rayservice.yaml")]
    assert "2 objects; 1 errors" in report.summary()


def test_cli_on_stdin():
    proc = subprocess.run([sys.executable, "-m", "rayllm_cli.manifest_checks", "-", "--json"],
                          input=RENDERED, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["findings"][0]["rule"] == "yaml"


CHART = REPO / "charts" / "ray-llm"
VALUES = sorted((REPO / "values").glob("*.yaml"))


@pytest.mark.skipif(not (CHART / "Chart.yaml").is_file(), reason="no chart")
@pytest.mark.parametrize("values", [None] + VALUES, ids=lambda p: p.name if p else "defaults")
def test_rendered_chart_has_no_errors(values):
    from rayllm_cli.helm_tools import fetch_helm

    args = [str(fetch_helm("4")), "template", "llm", str(CHART), "--namespace", "ai"]
    if values:
        args += ["-f", str(values)]
    env = dict(os.environ, KUBECONFIG="/nonexistent")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = check_rendered(proc.stdout)
    assert report.ok, "\n".join(map(str, report.errors))
    assert any(o["kind"] == "RayService" for o in report.objects)
