"""`ray-llm run` without Ray: the pod layout, model choice and input errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from rayllm_cli.run_command import choose_models, layout_release, openai_models, parse_model_overrides

from .helpers import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prod_docs(helm4):
    import subprocess

    out = subprocess.run([str(helm4), "template", "llm", str(REPO / "charts/ray-llm"), "-f",
                          str(REPO / "values/prod.yaml")], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def test_layout_puts_every_mounted_file_where_the_head_pod_sees_it(prod_docs, tmp_path):
    layout = layout_release(prod_docs, tmp_path)
    service = next(d for d in prod_docs if d["kind"] == "RayService")
    rendered = yaml.safe_load(service["spec"]["serveConfigV2"])
    def model_paths(app):
        args = app.get("args") or {}
        return list(args.get("llm_configs", [])) + ([args["llm_config"]] if args.get("llm_config") else [])

    llm_paths = [p for app in rendered["applications"] for p in model_paths(app)]
    assert llm_paths, "prod has Ray Serve LLM apps"
    local_apps = {a["name"]: a for a in layout.serve_config["applications"]}
    for app in rendered["applications"]:
        for pod_path in model_paths(app):
            local = tmp_path / pod_path.lstrip("/")
            assert str(local) in model_paths(local_apps[app["name"]])
            # Content-addressed names: the hash in the name matches the file laid out.
            digest = pod_path.rsplit(".", 2)[-2]
            assert hashlib.sha256(local.read_bytes()).hexdigest()[:12] == digest
    # The runtime ConfigMap is laid out as a package, as on PYTHONPATH in the pod.
    assert (tmp_path / "home/ray/rayllm/runtime/rayllm_runtime/apps.py").is_file()
    assert (tmp_path / "home/ray/rayllm/runtime/rayllm_runtime/engines/cpu.py").is_file()
    # Custom resources of every worker group, so tier-pinned bundles schedule locally.
    assert {"rayllm-tier-small", "rayllm-tier-xlarge"} <= set(layout.ray_resources)
    assert all(v > 0 for v in layout.ray_resources.values())
    # Model ids of the openai apps are read from the laid-out files.
    ids = {m for _app, m, _src in openai_models(layout.serve_config, tmp_path)}
    prod = yaml.safe_load((REPO / "values/prod.yaml").read_text())
    assert ids == {m["model_loading_config"]["model_id"] for m in prod["models"].values()
                   if not m.get("disabled")}


def test_choose_models_prefers_overrides_then_local_then_network_then_tiny(tmp_path):
    weights = tmp_path / "w"
    weights.mkdir()
    models = [("a", "m1", "org/remote"), ("a", "m2", str(weights)), ("a", "m3", "org/other"),
              ("a", "m4", {"bucket_uri": "s3://b/x"})]
    offline = choose_models(models, {"m3": "/mine"}, "auto", hub_reachable=lambda: False)
    assert [(c.model_id, c.source) for c in offline] == [("m1", ""), ("m2", str(weights)), ("m3", "/mine"), ("m4", "")]
    online = choose_models(models, {}, "auto", hub_reachable=lambda: True)
    assert [c.source for c in online] == ["org/remote", str(weights), "org/other", ""]
    assert all(c.source == "" for c in choose_models(models, {}, "tiny", hub_reachable=lambda: True))
    with pytest.raises(Exception, match="--model m4="):
        choose_models(models, {}, "values", hub_reachable=lambda: True)


def test_bad_model_override_is_a_usage_error():
    with pytest.raises(Exception, match="MODEL_ID=PATH"):
        parse_model_overrides(["no-equals-sign"])
    code, _out, err = cli(*["run", "-f", str(REPO / "values/dev.yaml"), "--model", "oops"])
    assert code == 2 and "MODEL_ID=PATH" in err and "Traceback" not in err


@pytest.mark.needs_ray  # `ray-llm run` imports Ray Serve before it renders
def test_run_refuses_invalid_values_before_deploying(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  x:\n    tier: nowhere\n    model_loading_config: {model_id: x}\n")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, out, err = cli(*["run", "-f", str(bad), "--port", str(busy.getsockname()[1])])
        # A port in use is a usage error, found before anything is rendered.
        assert code == 2 and "in use" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    code, out, err = cli(*["run", "-f", str(bad), "--port", str(free)])
    assert code == 1
    assert "nothing deployed" in out and "models.x.tier" in err
