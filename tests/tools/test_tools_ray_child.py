"""lint's Ray check runs in a child process that imports Ray with torch,
transformers and pandas held back: its verdicts must equal a plain import of Ray's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.needs_ray  # Ray Serve LLM's models judge the files

from tests.conftest import VALUES_DIR, docs_of, helm_template  # noqa: E402


def _verdicts(items, *flags):
    proc = subprocess.run([sys.executable, "-m", "rayllm_cli.ray_verdicts", *flags], input=json.dumps(items),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _items(helm4):
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)
    serve = next(d for d in docs if d["kind"] == "RayService")["spec"]["serveConfigV2"]
    models = [yaml.safe_load(text) for d in docs if d["kind"] == "ConfigMap"
              and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "model-config"
              for text in d["data"].values()]
    good = models[0]
    broken = [
        dict(good, accelerator_type="L5"),                                   # field validator
        dict(good, no_such_field=1),                                         # extra field
        {k: v for k, v in good.items() if k != "model_loading_config"},      # missing
        dict(good, deployment_config={"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}),
        dict(good, server_cls="no_such_module.sub:Server"),                  # load_class at validation
        dict(good, server_cls="torch.nn:Module"),                            # a class whose import needs torch
        dict(good, placement_group_config={"bundles": [{"CPU": 1}]}),        # CPU bundles + accelerator_type
        dict(good, llm_engine="nope"),
        dict(good, deployment_config={"request_router_config": {"request_router_class": "nope.mod:Router"}}),
        dict(good, deployment_config={"request_router_config": {
            "request_router_class": "ray.serve._private.request_router:PowerOfTwoChoicesRequestRouter"}}),
        dict(good, server_cls="pandas:DataFrame"),                           # a held-back module named directly
    ]
    bad_serve = yaml.safe_load(serve)
    del bad_serve["applications"][0]["import_path"]
    return ([["ServeDeploySchema", serve], ["ServeDeploySchema", yaml.safe_dump(bad_serve)]]
            + [["LLMConfig", yaml.safe_dump(m)] for m in models + broken])


def test_router_pickling_is_memoised_but_still_checked(helm4):
    """The same router path twice is pickled once; a bad path is still rejected every time."""
    items = _items(helm4)
    good = yaml.safe_load(items[2][1])
    bad = dict(good, deployment_config={"request_router_config": {"request_router_class": "nope.mod:Router"}})
    twice = [["LLMConfig", yaml.safe_dump(bad)], items[2], ["LLMConfig", yaml.safe_dump(bad)], items[3]]
    verdicts = _verdicts(twice)
    assert verdicts[0] is not None and verdicts[2] == verdicts[0] and verdicts[1] is None and verdicts[3] is None


def test_child_verdicts_equal_a_plain_ray_import(helm4):
    items = _items(helm4)
    held_back = _verdicts(items)
    plain = _verdicts(items, "--plain")
    assert held_back == plain
    n_models = len(items) - 2 - 11
    assert held_back[0] is None and held_back[1] is not None
    assert held_back[2:2 + n_models] == [None] * n_models  # prod's model files pass
    # Every broken variant is rejected, except where Ray itself accepts it (torch.nn:Module loads fine).
    first_broken = 2 + n_models
    rejected = [v is not None for v in held_back[first_broken:]]
    assert rejected[:5] == [True] * 5 and rejected[6:9] == [True] * 3
    assert rejected[5] == (plain[first_broken + 5] is not None)  # torch.nn:Module: whatever Ray says
    # The router path is checked for every file, not just the first one with a router.
    assert rejected[9] == (plain[first_broken + 9] is not None)
    # Held back during the first pass, so only the re-check with pandas bound can give Ray's answer.
    assert rejected[10] == (plain[first_broken + 10] is not None)


def test_child_failure_is_reported_not_a_verdict(monkeypatch):
    from rayllm_cli import ray_verdicts

    monkeypatch.setattr(ray_verdicts.sys, "executable", "/bin/false")
    with pytest.raises(ray_verdicts.RayCheckError):
        ray_verdicts.check_in_child([("LLMConfig", "{}")])


def test_first_run_starts_the_checker_early_and_stops_it_when_unneeded(tmp_path):
    """With nothing cached, lint starts the checker at once; invalid values then stop it (no orphan left)."""
    import os

    from tests.cli.helpers import base, write

    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"))
    v = base()
    v["models"]["qwen"]["tier"] = "nope"
    code = ("import sys, rayllm_cli.ray_verdicts as rv; started = []; Real = rv.RayChild\n"
            "class Rec(Real):\n"
            "    def __init__(self):\n"
            "        super().__init__(); started.append(self)\n"
            "rv.RayChild = Rec\n"
            "from rayllm_cli.main import run\n"
            f"rc = run(['lint', '-f', {str(write(tmp_path, v))!r}])\n"
            "sys.stderr.write('STARTED=%d ALIVE=%d RC=%s\\n' % (len(started), sum(c.proc.poll() is None for c in started), rc))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.stderr.strip().splitlines()[-1] == "STARTED=1 ALIVE=0 RC=1", proc.stderr[-2000:]
    assert "rendering skipped" in proc.stdout
