"""The real stack, end to end: the chart's render served by Ray Serve LLM on vLLM's CPU build.

`ray-llm run` as users run it (the console script in a subprocess): helm renders the chart,
the files land where the pods mount them, the model files are fitted to this CPU-only machine
(each change printed), and Ray's own `build_openai_app` and `LLMServer` start real vLLM
engines on a tiny model built here (no network: HF_HUB_OFFLINE). The openai client then talks
to both kinds of app the chart renders: Ray's OpenAI app on its route, and the runtime's
gateway in front of a route-less one-model app, reached by Serve handle.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from rayllm_runtime.testing import free_port

from .runner import port_open, served

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1200)]

OFFLINE = {"HF_HUB_OFFLINE": "1"}
KEY = "local-test-key-1234"


def _exercise(client: openai.OpenAI, model: str) -> None:
    """/v1/models, chat, streamed chat (with usage), n > 1 and a text completion, on real vLLM."""
    assert model in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}],
                                           max_tokens=6, temperature=0)
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens > 0
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens == 6
    several = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                             max_tokens=4, n=2, temperature=0.9)
    assert sorted(c.index for c in several.choices) == [0, 1] and several.usage.completion_tokens == 8
    completion = client.completions.create(model=model, prompt="Ray Serve", max_tokens=4, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens == 4


def test_dev_values_on_rays_openai_app(tmp_path):
    """values/dev.yaml: Ray's build_openai_app (through the chart's verifying wrapper) on vLLM."""
    port = free_port()
    env = {**OFFLINE, "RAYLLM_CACHE_DIR": str(tmp_path / "cache")}
    with served(["-f", "values/dev.yaml", "--workdir", str(tmp_path / "pod")], port, env) as run:
        assert "models run on vLLM's CPU build" in run.text
        assert "offline and not cached; using a tiny random model built here" in run.text
        fitted = next(line for line in run.output if "fitted to this machine: model qwen2.5-0.5b-instruct" in line)
        assert "engine bundle: 1 GPU -> 1 CPU" in fitted and "accelerator_type dropped" in fitted
        client = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="none", max_retries=0)
        card = client.models.list().data[0]
        # Ray's OpenAI ingress answers (its model card carries Ray's metadata), not a stand-in
        assert card.id == "qwen2.5-0.5b-instruct" and card.model_extra["metadata"]["input_modality"] == "text"
        _exercise(client, "qwen2.5-0.5b-instruct")
        assert run.stop() == 0
    assert "ray-llm run: shut down" in run.text and "Traceback" not in run.text
    assert not port_open(port)
    # the fitted model file sits beside the rendered one, content-addressed like the chart's
    assert len(list((tmp_path / "pod/home/ray/rayllm/models/qwen").glob("qwen-0-5b.*.yaml"))) == 2


def test_gateway_and_rays_app_side_by_side(tmp_path):
    """ci/gateway-values.yaml: Ray's OpenAI app on /chat, and the gateway (API keys from a stand-in
    for the Secret mount) in front of a route-less LLMServer app it calls by Serve handle."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "keys").write_text(KEY + "\n")
    port = free_port()
    env = {**OFFLINE, "RAYLLM_CACHE_DIR": str(tmp_path / "cache")}
    args = ["-f", "charts/ray-llm/ci/gateway-values.yaml", "--secret", f"ray-llm-api-keys={keys}"]
    with served(args, port, env) as run:
        assert "app private.private-model: no HTTP route (reached through its gateway)" in run.text
        _exercise(openai.OpenAI(base_url=f"{run.base_url}/chat/v1", api_key="none", max_retries=0), "open-model")
        gateway = openai.OpenAI(base_url=f"{run.base_url}/gateway/v1", api_key=KEY, max_retries=0)
        _exercise(gateway, "private-model")
        assert [m.id for m in gateway.models.list().data] == ["private-model"]
        for headers in ({}, {"authorization": "Bearer wrong-key"}):
            denied = httpx.post(f"{run.base_url}/gateway/v1/chat/completions", headers=headers, timeout=60,
                                json={"model": "private-model", "messages": [{"role": "user", "content": "x"}]})
            assert denied.status_code == 401
        # the model behind the gateway is on no route of its own: nothing but the gateway reaches it
        for path in ("/private/v1/models", "/private.private-model/v1/models"):
            assert httpx.get(f"{run.base_url}{path}", timeout=60).status_code == 404
        assert run.stop() == 0
    assert "Traceback" not in run.text


def test_a_replica_the_local_ray_cannot_place_stops_the_run_naming_it(tmp_path):
    """ci/gateway-values.yaml on a local Ray given 1 CPU (the apps ask about 4): instead of waiting out
    the deploy timeout, the run exits 1 naming the deployment, what one replica asks for, what the local
    Ray has, and the fix; nothing is left listening."""
    import os
    import subprocess

    from .runner import CLI, REPO

    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", RAYLLM_CACHE_DIR=str(tmp_path / "cache"))
    args = ["run", "-f", "charts/ray-llm/ci/gateway-values.yaml", "--num-cpus", "1", "--once", "--port", str(port),
            "--workdir", str(tmp_path / "pod")]
    # The timeout only keeps a hung run from hanging the suite: the run itself gives up once Serve
    # reports the replica unschedulable (after Serve's 30 s slow-start mark).
    proc = subprocess.run(CLI + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    error = next(line for line in out.splitlines() if line.startswith("ray-llm: error: "))
    assert "unschedulable on the local Ray" in error and "LLMServer:" in error, error
    assert "Resources required for each replica" in error and "1 logical CPU(s)" in error, error
    assert "--num-cpus" in error, error
    assert "Traceback" not in out and not port_open(port)
