"""The CLI end to end: exit codes, garbage input, lint, plan, schema, and the `helm ray-llm` plugin on
Helm 3 and 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, VALUES_DIR
from .helpers import base, cli, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PROD = VALUES_DIR / "prod.yaml"
RAY_LLM = Path(sys.executable).parent / "ray-llm"


@pytest.fixture(autouse=True)
def _crds(monkeypatch):
    if not os.environ.get("RAYLLM_KUBERAY_CRDS") and (REPO.parent / "shared" / "kuberay-crds").is_dir():
        monkeypatch.setenv("RAYLLM_KUBERAY_CRDS", str(REPO.parent / "shared" / "kuberay-crds"))


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("values", sorted(VALUES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_values_are_valid(values):
    code, out, err = cli("validate", "-f", str(values))
    assert code == 0, out + err


def test_exit_codes(tmp_path):
    good = write(tmp_path, base(), "good.yaml")
    bad = base()
    bad["models"]["qwen"]["tier"] = "nope"
    assert cli("validate", "-f", str(good))[0] == 0
    assert cli("validate", "-f", str(write(tmp_path, bad, "bad.yaml")))[0] == 1
    assert cli("validate", "-f", str(tmp_path / "missing.yaml"))[0] == 2
    assert cli("validate", "--no-such-flag")[0] == 2
    assert cli("validate", "-o", "xml")[0] == 2
    assert cli("no-such-command")[0] == 2


@pytest.mark.parametrize("content", [
    b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe binary",
    b"tiers:\n  small: [1\n",
    b"- a\n- b\n",
    b"just a string\n",
    b"a: 1\na: 2\n",
    b"tiers: 5\nmodels: [1, 2]\nhead: {resources: {requests: {memory: 12}}}\n",
    b"--- {}\n--- {}\n",
    b"\xef\xbb\xbftiers: {}\n",
    b"",
])
def test_garbage_input_is_a_clean_finding(tmp_path, content):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(content)
    proc = subprocess.run([str(RAY_LLM), "validate", "-f", str(path), "-o", "json"], capture_output=True, text=True)
    assert "Traceback" not in proc.stderr + proc.stdout
    if proc.returncode == 0:
        assert json.loads(proc.stdout)["valid"] is True
    else:
        assert proc.returncode == 1, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["valid"] is False and doc["findings"]
        assert all({"severity", "path", "value", "expected", "fix", "origin"} <= set(f) for f in doc["findings"])


def test_text_output_names_file_and_line(tmp_path):
    bad = base()
    bad["models"]["qwen"]["engine_kwargs"]["dtype"] = "bfloat16"
    path = write(tmp_path, bad)
    code, out, _ = cli("validate", "-f", str(path))
    assert code == 1
    line = next(i + 1 for i, l in enumerate(path.read_text().splitlines()) if "bfloat16" in l and "float16" in l or l.strip() == "dtype: bfloat16")
    assert f"{path}:{line}" in out and "RL007" in out and "fix:" in out


# ---------------------------------------------------------------- schema / pack-runtime


def test_schema_check_and_write(tmp_path):
    assert cli("schema", "--check")[0] == 0
    stale = tmp_path / "values.schema.json"
    stale.write_text("{}\n")
    assert cli("schema", "--check", "--path", str(stale))[0] == 1
    assert cli("schema", "--path", str(stale))[0] == 0
    assert cli("schema", "--check", "--path", str(stale))[0] == 0
    assert not [p for p in tmp_path.iterdir() if p.name != "values.schema.json"]  # no temp files left


def test_docs_writes_table_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# chart\n\n<!-- values-table:start -->\nold\n<!-- values-table:end -->\n\ntail\n")
    assert cli("docs", "--check", "--path", str(readme))[0] == 1
    assert cli("docs", "--path", str(readme))[0] == 0
    text = readme.read_text()
    assert "`tiers`" in text and "`image.tag`" in text and text.endswith("tail\n")
    assert cli("docs", "--check", "--path", str(readme))[0] == 0


# ---------------------------------------------------------------- lint


def test_lint_prod_passes():
    code, out, err = cli("lint", "-f", str(PROD), "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["valid"], [f for f in doc["findings"] if f["severity"] == "error"]
    assert doc["objects"] >= 3


def test_lint_catches_a_typo_only_the_crd_knows(tmp_path):
    """`tolerations` pass through the values schema verbatim; KubeRay's CRD rejects `keyy`."""
    v = base()
    v["tiers"]["small"]["tolerations"] = [{"keyy": "nvidia.com/gpu", "operator": "Exists"}]
    path = write(tmp_path, v)
    assert cli("validate", "-f", str(path))[0] == 0
    code, out, err = cli("lint", "-f", str(path), "-o", "json")
    doc = json.loads(out)
    assert code == 1 and not doc["valid"]
    assert any("keyy" in (f["path"] + f["message"]) and f["severity"] == "error" for f in doc["findings"]), doc


def test_lint_skips_rendering_when_values_are_invalid(tmp_path):
    v = base()
    v["models"]["qwen"]["tier"] = "nope"
    code, out, _ = cli("lint", "-f", str(write(tmp_path, v)))
    assert code == 1 and "rendering skipped" in out


def test_lint_reads_stdin_once_for_validate_and_helm(tmp_path):
    """`-f -`: validate and the rendered manifests both see stdin's values (helm used to get an empty stdin)."""
    v = base()
    v["tiers"]["small"]["tolerations"] = [{"keyy": "nvidia.com/gpu", "operator": "Exists"}]
    text = yaml.safe_dump(v)
    proc = subprocess.run([str(RAY_LLM), "lint", "-f", "-", "-o", "json"], input=text, capture_output=True,
                          text=True, timeout=300)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr
    assert any("keyy" in (f["path"] + f["message"]) for f in doc["findings"]), doc["findings"]
    del v["tiers"]["small"]["tolerations"]
    v["models"]["qwen"]["tier"] = "nope"
    proc = subprocess.run([str(RAY_LLM), "lint", "-f", "-"], input=yaml.safe_dump(v), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "<stdin>" in proc.stdout and "rendering skipped" in proc.stdout, proc.stdout


@pytest.mark.needs_ray
def test_lint_says_when_the_checking_ray_is_not_the_pods_ray(tmp_path):
    """Ray's verdicts hold for the Ray that gave them: lint warns of a release line other than rayVersion."""
    pytest.importorskip("ray.serve")
    from importlib import metadata

    here = metadata.version("ray")
    other = "2.59.0" if not here.startswith("2.59.") else "2.60.0"
    notes = {}
    for version in (here, other):
        v = base()
        v["rayVersion"], v["image"] = version, {"tag": f"{version}-py311-cu128"}
        code, out, err = cli("lint", "-f", str(write(tmp_path, v, f"v{version}.yaml")), "-o", "json")
        assert code == 0, out + err
        notes[version] = [f["message"] + " " + f["fix"] for f in json.loads(out)["findings"]
                          if f["rule"] == "ray:version" and f["severity"] == "warning"]
    assert notes[here] == []
    assert len(notes[other]) == 1 and f"Ray {here} (installed here)" in notes[other][0]
    assert f"ray[serve,llm]=={other}" in notes[other][0]


# ---------------------------------------------------------------- plan


def test_plan_prod_table_and_json():
    code, out, _ = cli("plan", "-f", str(PROD))
    assert code == 0
    for tier in ("small", "medium", "large", "xlarge"):
        assert f"tier {tier}:" in out
    assert "falcon-40b" in out and "fits" in out and "assumptions:" in out
    code, out, _ = cli("plan", "-f", str(PROD), "-o", "json")
    doc = json.loads(out)
    tiers = {t["tier"]: t for t in doc["tiers"]}
    xl = tiers["xlarge"]["models"][0]
    assert xl["fit"]["engine_gpus"] == 2 and xl["fit"]["gpu_memory_gib"] == 80
    assert tiers["medium"]["gpus_at_min"] == 1 and tiers["medium"]["workers_needed_at_max"] == 8
    # idle, prod holds one L4 by design (falcon3-7b keeps a warm replica); CPU-only replicas hold none
    floor = doc["idle_floor"]
    assert (floor["gpu_nodes"], floor["gpus"]) == (1, 1)
    assert floor["reasons"] == ["tier medium: 1 node(s) of 1 x L4 (falcon3-7b min_replicas 1)"]
    assert "pinned to the head" in floor["cpu_only_replicas"]


def test_plan_idle_floor_is_zero_when_everything_scales_to_zero():
    code, out, _ = cli("plan", "-f", str(PROD), "--set", "models.falcon3-7b.deployment_config.autoscaling_config.min_replicas=0")
    assert code == 0
    assert "idle floor (no traffic, every model at its min_replicas): 0 GPU node(s), 0 GPU(s)" in out


def test_plan_flags_a_model_that_does_not_fit(tmp_path):
    v = base()
    v["models"]["big"] = {"tier": "small", "family": "llama", "app": "chat",
                          "model_loading_config": {"model_id": "llama-13b", "model_source": "meta-llama/Llama-2-13b-chat-hf"},
                          "engine_kwargs": {"dtype": "float16", "max_model_len": 4096},
                          "deployment_config": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 1}}}
    v["tiers"]["small"]["maxReplicas"] = 3
    code, out, _ = cli("plan", "-f", str(write(tmp_path, v)), "-o", "json")
    doc = json.loads(out)
    small = next(t for t in doc["tiers"] if t["tier"] == "small")
    fit = next(m for m in small["models"] if m["model"] == "big")["fit"]
    assert fit["parameters_b"] == 13 and fit["verdict"] == "does-not-fit"


# ---------------------------------------------------------------- the helm plugin


@pytest.mark.parametrize("label", ["3.18", "4"])
def test_helm_plugin_validate(helm_paths, tmp_path, label):
    helm = str(helm_paths[label])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(HELM_DATA_HOME=str(tmp_path / "data"), HELM_CONFIG_HOME=str(tmp_path / "config"),
               HELM_CACHE_HOME=str(tmp_path / "cache"), KUBECONFIG="/nonexistent", RAYLLM_CLI=str(RAY_LLM))
    install = subprocess.run([helm, "plugin", "install", str(REPO / "plugin")], capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([helm, "plugin", "list"], capture_output=True, text=True, env=env)
    assert "ray-llm" in listed.stdout
    ok = subprocess.run([helm, "ray-llm", "validate", "-f", str(PROD)], capture_output=True, text=True, env=env, cwd=REPO)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = base()
    bad["models"]["qwen"]["engine_kwargs"]["dtype"] = "bfloat16"
    proc = subprocess.run([helm, "ray-llm", "validate", "-f", str(write(tmp_path, bad)), "-o", "json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and json.loads(proc.stdout)["valid"] is False
    dbg = subprocess.run([helm, "--debug", "-n", "ai", "--kube-context", "ctx", "ray-llm", "validate", "-f", str(PROD)],
                         capture_output=True, text=True, env=env)
    assert dbg.returncode == 0 and "HELM_NAMESPACE=ai" in dbg.stderr and "HELM_KUBECONTEXT=ctx" in dbg.stderr
    missing = subprocess.run([helm, "ray-llm", "validate", "-f", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2


def test_plugin_files_are_legacy_format_for_helm3_and_helm4():
    for path, cmd in ((REPO / "plugin" / "plugin.yaml", "$HELM_PLUGIN_DIR/bin/ray-llm-shim.sh"),
                      (REPO / "plugin.yaml", "$HELM_PLUGIN_DIR/plugin/bin/ray-llm-shim.sh")):
        meta = yaml.safe_load(path.read_text())
        assert meta["name"] == "ray-llm" and meta["command"] == cmd and meta["ignoreFlags"] is False
        assert not {"apiVersion", "platformCommand", "args"} & set(meta)
    assert os.access(REPO / "plugin" / "bin" / "ray-llm-shim.sh", os.X_OK)


def test_shim_uses_rayllm_python(tmp_path):
    env = dict(os.environ, RAYLLM_PYTHON=sys.executable, HELM_PLUGIN_DIR=str(REPO / "plugin"))
    env.pop("RAYLLM_CLI", None)
    proc = subprocess.run([str(REPO / "plugin" / "bin" / "ray-llm-shim.sh"), "rules"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "RL001" in proc.stdout
