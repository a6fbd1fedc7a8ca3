"""lint's check with Ray's own models (ServeDeploySchema, LLMConfig) and its verdict cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.needs_ray  # Ray Serve LLM's models judge the files


def _docs(serve_config: dict, model_files: dict) -> list:
    return [
        {"kind": "RayService", "metadata": {"name": "llm"}, "spec": {"serveConfigV2": yaml.safe_dump(serve_config)}},
        {"kind": "ConfigMap", "metadata": {"name": "llm-models-qwen",
                                           "labels": {"app.kubernetes.io/component": "model-config"}},
         "data": {k: yaml.safe_dump(v) for k, v in model_files.items()}},
    ]


GOOD_MODEL = {"model_loading_config": {"model_id": "m", "model_source": "org/m"}, "accelerator_type": "L4"}
GOOD_SERVE = {"applications": [{"name": "a", "import_path": "x:y", "route_prefix": "/"}]}


def test_ray_models_reject_bad_files_and_verdicts_are_cached(tmp_path, monkeypatch):
    from rayllm_cli import lint

    monkeypatch.setenv("RAYLLM_CACHE_DIR", str(tmp_path / "cache"))
    bad_serve = {"applications": [{"name": "a", "route_prefix": "/"}]}  # no import_path
    docs = _docs(bad_serve, {"good.yaml": GOOD_MODEL, "bad.yaml": {"accelerator_type": "L4"}})
    first = lint._ray_findings(docs)
    assert sorted(f.rule for f in first) == ["ray:LLMConfig", "ray:ServeDeploySchema"]
    assert any("data.bad.yaml" in f.path for f in first)
    cached = list((tmp_path / "cache" / "ray-verdicts").rglob("*.json"))
    assert len(cached) == 3  # serveConfigV2 + two model files, failures included
    # A cached verdict gives the same findings (no re-check needed).
    again = lint._ray_findings(docs)
    assert [(f.rule, f.path, f.message) for f in again] == [(f.rule, f.path, f.message) for f in first]
    # Cached failures stay failures even if the cache is the only source.
    for path in cached:
        assert "error" in json.loads(path.read_text())
    assert lint._ray_findings(_docs(GOOD_SERVE, {"good.yaml": GOOD_MODEL})) == []


def test_cache_off_still_checks(tmp_path, monkeypatch):
    from rayllm_cli import lint

    monkeypatch.setenv("RAYLLM_CACHE_DIR", "off")
    found = lint._ray_findings(_docs(GOOD_SERVE, {"bad.yaml": {"accelerator_type": "L4"}}))
    assert [f.rule for f in found] == ["ray:LLMConfig"]
    assert lint.verdict_cache_dir() is None


def test_relint_of_unchanged_files_needs_no_ray_import(tmp_path):
    """lint never imports Ray itself (a child process does, once per new file); a re-lint needs no child."""
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import sys; import rayllm_cli.ray_verdicts as rv; calls = []; real = rv.check_in_child; "
            "rv.check_in_child = lambda items, *a, **kw: (calls.append(len(items)), real(items, *a, **kw))[1]; "
            "from rayllm_cli.main import run; rc = run(['lint', '-f', 'values/prod.yaml', '-o', 'json']); "
            "sys.stderr.write('RAY=%s CHILD=%s RC=%s\\n' % ('ray' in sys.modules, calls, rc))")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    tails = [r.stderr.strip().splitlines()[-1] for r in runs]
    assert tails[0].startswith("RAY=False CHILD=[") and tails[0].endswith("] RC=0"), [r.stderr[-1500:] for r in runs]
    assert tails[1] == "RAY=False CHILD=[] RC=0", [r.stderr[-1500:] for r in runs]
    assert json.loads(runs[0].stdout)["valid"] and json.loads(runs[1].stdout)["valid"]
