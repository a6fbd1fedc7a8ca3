"""NOTES.txt renders the way `helm install` renders it, offline.

`helm template` never renders NOTES.txt. Helm 4's `helm install --dry-run=client`
does, with no cluster (KUBECONFIG points nowhere); Helm 3.17/3.18 still dial the
cluster there, so for them the test renders the same file through `tpl` in a
throw-away copy of the chart (same values, same named templates).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ..conftest import CHART, VALUES_DIR, run_helm

CI_DIR = CHART / "ci"


def notes_helm4(helm4, values, sets=()):
    args = ["install", "llm", str(CHART), "--namespace", "ai", "--dry-run=client", "-o", "json"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return json.loads(run_helm(helm4, args).stdout)["info"]["notes"]


@pytest.fixture(scope="module")
def probe_chart(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("notes") / "ray-llm"
    shutil.copytree(CHART, root)
    shutil.copy(CHART / "templates" / "NOTES.txt", root / "notes-probe.txt")
    (root / "templates" / "zz-notes-probe.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\n'
        'data:\n  notes: {{ tpl (.Files.Get "notes-probe.txt") . | toJson }}\n'
    )
    return root


def notes_via_tpl(helm, chart: Path, values):
    args = ["template", "llm", str(chart), "--namespace", "ai", "--show-only", "templates/zz-notes-probe.yaml"]
    for v in values:
        args += ["-f", str(v)]
    return yaml.safe_load(run_helm(helm, args).stdout)["data"]["notes"]


def _curls(notes):
    lines = notes.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip().startswith("curl "):
            block = [line]
            j = i
            while block[-1].rstrip().endswith("\\"):
                j += 1
                block.append(lines[j])
            out.append(" ".join(b.strip().rstrip("\\").strip() for b in block))
    return out


def test_prod_notes_port_forward_and_one_curl_per_app(helm4):
    notes = notes_helm4(helm4, [VALUES_DIR / "prod.yaml"])
    assert "kubectl -n ai port-forward svc/llm-ray-llm-serve 8000:8000" in notes
    prod = yaml.safe_load((VALUES_DIR / "prod.yaml").read_text())
    curls = _curls(notes)
    # prod serves every model through the gateway only: no llmApp has a route of its own
    assert not [a for a in prod["llmApps"].values() if a.get("routePrefix")]
    assert len(curls) == 1
    for app, cfg in {k: v for k, v in prod["llmApps"].items() if v.get("routePrefix")}.items():
        ids = [m["model_loading_config"]["model_id"] for m in prod["models"].values() if m["app"] == app]
        prefix = cfg["routePrefix"].rstrip("/")
        match = [c for c in curls if f"http://localhost:8000{prefix}/v1/chat/completions" in c]
        assert len(match) == 1, (app, curls)
        body = json.loads(match[0].split("-d '", 1)[1].rsplit("'", 1)[0])
        assert body["model"] in ids
        assert "Authorization" not in match[0]
    gateway = [c for c in curls if "/gateway/v1/chat/completions" in c]
    assert len(gateway) == 1 and 'Authorization: Bearer $API_KEY' in gateway[0]
    body = json.loads(gateway[0].split("-d '", 1)[1].rsplit("'", 1)[0])
    fronted = [m["model_loading_config"]["model_id"] for m in prod["models"].values()
               if prod["llmApps"][m["app"]].get("gateway") == "gateway"]
    assert body["model"] in fronted


def test_custom_only_notes(helm4):
    notes = notes_helm4(helm4, [CI_DIR / "custom-only-values.yaml"])
    curls = _curls(notes)
    assert len(curls) == 1
    assert "http://localhost:8000/gateway/v1/chat/completions" in curls[0]
    assert '"model": "echo"' in curls[0] and "Authorization" not in curls[0]


def test_scale_down_and_dashboard_hints(helm4):
    notes = notes_helm4(helm4, [CI_DIR / "scale-down-values.yaml"], sets=["monitoring.grafanaDashboard.enabled=true"])
    assert "kubectl -n ai patch rayservice llm-ray-llm --type merge -p '{\"spec\":{\"suspend\":false}}'" in notes
    assert "llm-ray-llm-dashboard" in notes


@pytest.mark.parametrize("label", ["3.17", "3.18"])
def test_helm3_renders_the_same_notes(helm_paths, helm4, probe_chart, label):
    for values in (VALUES_DIR / "prod.yaml", CI_DIR / "custom-only-values.yaml"):
        assert notes_via_tpl(helm_paths[label], probe_chart, [values]).strip() == notes_helm4(helm4, [values]).strip()
