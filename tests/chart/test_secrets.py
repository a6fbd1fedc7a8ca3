"""Secrets reach the pods only as secretKeyRef, never in ConfigMaps or serveConfigV2."""

from __future__ import annotations

import pytest

from ..conftest import VALUES_DIR, VALUES_FILES, docs_of, helm_template, rayservice_of

TOKEN = "hf_SuperSecretTokenValue1234567890"


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_no_secret_literal_in_configmaps_or_serve_config(helm4, values):
    docs = docs_of(helm_template(helm4, [values], sets=["huggingFaceToken.secretName=hf"]).stdout)
    for d in docs:
        if d["kind"] == "ConfigMap":
            for key, text in d.get("data", {}).items():
                assert "hf_" not in text and "HF_TOKEN" not in text, key
    serve = rayservice_of(docs)["spec"]["serveConfigV2"]
    assert "hf_" not in serve and "HF_TOKEN" not in serve
    for group in rayservice_of(docs)["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert set(env["HF_TOKEN"]) == {"name", "valueFrom"}


@pytest.mark.parametrize(
    "sets, where",
    [
        ([f"models.qwen-0-5b.runtime_env.env_vars.HUGGING_FACE_HUB_TOKEN={TOKEN}"], "models.qwen-0-5b.runtime_env.env_vars"),
        ([f"tiers.small.env[0].name=HF_TOKEN", f"tiers.small.env[0].value={TOKEN}"], "tiers.small.env[0]"),
    ],
)
def test_inline_secret_fails_render_without_echoing_it(helm4, sets, where):
    proc = helm_template(helm4, [VALUES_DIR / "dev.yaml"], sets=sets, check=False)
    assert proc.returncode != 0
    assert where in proc.stderr and "secret" in proc.stderr.lower()
    assert TOKEN not in proc.stderr and TOKEN not in proc.stdout
