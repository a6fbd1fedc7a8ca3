"""A model change reaches the running app, never through a stale file, and redeploys only what it must."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from ..conftest import VALUES_DIR, docs_of, helm_template, model_files_of, serve_config_of


def _paths(serve):
    return {
        p.rsplit("/", 1)[1].split(".")[0]: p
        for app in serve["applications"]
        for p in app.get("args", {}).get("llm_configs", []) + [app.get("args", {}).get("llm_config")]
        if p
    }


def test_changing_one_model_changes_serve_config_and_only_its_path(helm4):
    before = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)
    after = docs_of(
        helm_template(helm4, [VALUES_DIR / "prod.yaml"], sets=["models.falcon3-7b.engine_kwargs.max_num_seqs=32"]).stdout
    )
    sb, sa = serve_config_of(before), serve_config_of(after)
    assert sb != sa, "KubeRay re-applies only when serveConfigV2 changes"
    pb, pa = _paths(sb), _paths(sa)
    assert pb["falcon3-7b"] != pa["falcon3-7b"]
    for name in pb:
        if name != "falcon3-7b":
            assert pb[name] == pa[name], name
    # Serve versions an application by its whole config: behind the gateway each model is an
    # application of its own, so exactly one application's config moves and Serve redeploys it alone.
    changed = [a["name"] for a, b in zip(sb["applications"], sa["applications"]) if a != b]
    assert changed == ["falcon.falcon3-7b"], changed


@pytest.mark.needs_ray  # rayllm_runtime.serve_llm imports Ray Serve
def test_file_names_are_the_hash_of_their_content(helm4):
    from rayllm_runtime.serve_llm import content_digest

    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml"]).stdout)
    files = model_files_of(docs)
    serve_paths = set(_paths(serve_config_of(docs)).values())
    for key, text in files.items():
        cm, fname = key.split("/")
        digest = fname.rsplit(".", 2)[1]
        assert digest == hashlib.sha256(text.encode()).hexdigest()[:12] == content_digest(text)
        family = cm.split("-models-", 1)[1]
        assert f"/home/ray/rayllm/models/{family}/{fname}" in serve_paths


@pytest.mark.needs_ray
def test_loader_waits_for_the_new_file_and_never_reads_stale_content(tmp_path):
    from rayllm_runtime.serve_llm import content_digest, load_verified_config

    new = "model_loading_config:\n  model_id: m\nengine_kwargs:\n  max_num_seqs: 32\n"
    old = "model_loading_config:\n  model_id: m\nengine_kwargs:\n  max_num_seqs: 48\n"
    path = tmp_path / f"m.{content_digest(new)}.yaml"
    # kubelet has not synced yet: the new name holds old bytes (as an atomic-swap race could show).
    path.write_text(old)
    ticks = {"t": 0.0, "polls": 0}

    def sleep(s):
        ticks["t"] += s
        ticks["polls"] += 1
        if ticks["polls"] == 3:
            path.write_text(new)  # kubelet catches up

    cfg = load_verified_config(path, timeout_s=60, poll_interval_s=1, sleep=sleep, clock=lambda: ticks["t"])
    assert cfg["engine_kwargs"]["max_num_seqs"] == 32
    assert ticks["polls"] == 3


@pytest.mark.needs_ray
def test_loader_gives_up_with_a_clear_error(tmp_path):
    from rayllm_runtime.serve_llm import ConfigFileError, load_verified_config

    path = tmp_path / "m.0123456789ab.yaml"
    t = {"v": 0.0}
    with pytest.raises(ConfigFileError) as err:
        load_verified_config(path, timeout_s=5, poll_interval_s=1, sleep=lambda s: t.__setitem__("v", t["v"] + s), clock=lambda: t["v"])
    assert "does not exist" in str(err.value) and "configWaitTimeoutS" in str(err.value)


@pytest.mark.needs_ray
def test_wrapper_builds_rays_openai_app_from_verified_files(helm4, tmp_path):
    pytest.importorskip("ray.serve.llm")
    from ray.serve import Application

    from rayllm_runtime.serve_llm import build_openai_app

    docs = docs_of(helm_template(helm4, [VALUES_DIR / "dev.yaml"]).stdout)
    paths = []
    for key, text in model_files_of(docs).items():
        p = tmp_path / key.split("/")[1]
        p.write_text(text)
        paths.append(str(p))
    app = build_openai_app({"llm_configs": paths, "config_wait_timeout_s": 1})
    assert isinstance(app, Application)
