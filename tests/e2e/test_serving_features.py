"""Model cache, LoRA adapters and prefix-cache routing, served for real on vLLM's CPU build.

The three scenarios (ci/model-cache, ci/lora, ci/request-routing) merged as Helm merges
several -f files, through `ray-llm run` as users run it:

* the model cache: `--model-cache DIR` stands in for the volume; the chart renders the
  cached model's source as /models/<Hub id>, which loads from DIR/<Hub id> (a tiny model
  built here in the pre-pull Job's layout);
* LoRA: adapters made here are put in an S3-compatible server (moto) that stands in for the
  bucket; Ray Serve LLM downloads them per request and vLLM applies them, addressed as
  `<model>:<adapter>` through Ray's OpenAI app and through the runtime's gateway;
* routing: Ray's PrefixCacheAffinityRouter routes the model's requests; its prefix tree (a
  detached actor of the running Ray) holds the prompts it routed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import openai
import pytest

from rayllm_runtime.testing import build_tiny_lora, build_tiny_model, free_port

from .runner import REPO, served

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]

CI = REPO / "charts" / "ray-llm" / "ci"
SCENARIOS = ["model-cache-values.yaml", "lora-values.yaml", "request-routing-values.yaml"]
BUCKET = "rayllm-adapters"


@pytest.fixture()
def adapter_bucket(tmp_path):
    """An S3-compatible endpoint (moto) with one adapter per base model, and the env that points boto3 at it."""
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        yield s3, env
    finally:
        server.stop()


def _upload(s3, folder, prefix: str) -> None:
    for path in sorted(folder.iterdir()):
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")


def _tokens(client: openai.OpenAI, model: str) -> str:
    reply = client.completions.create(model=model, prompt="Ray Serve routes requests", max_tokens=8, temperature=0)
    assert reply.usage.completion_tokens == 8
    return reply.choices[0].text


def _prefix_tree_match(address: str, namespace: str, text: str) -> dict:
    """Ask the router's prefix tree (a detached actor of the served Ray) which replicas hold ``text``."""
    code = (
        "import json, sys, ray\n"
        "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
        "tree = ray.get_actor('LlmPrefixTreeActor', namespace=sys.argv[2])\n"
        "matched, tenants = ray.get(tree.prefix_match.remote(sys.argv[3]))\n"
        "print(json.dumps({'matched': matched, 'tenants': tenants}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, address, namespace, text], capture_output=True, text=True,
                          timeout=120,
                          # a local ray.init() cluster (Ray >= 2.52) turns token auth on and keeps the token in
                          # ~/.ray/auth_token; a client given an explicit address must be told to send it
                          env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cached_weights_lora_adapters_and_prefix_routing(tmp_path, adapter_bucket):
    s3, aws_env = adapter_bucket
    # The cache volume as the pre-pull Job leaves it: <root>/<Hub id>, done marker included.
    cache = tmp_path / "model-cache"
    cached = build_tiny_model(cache / "Qwen" / "Qwen2.5-0.5B-Instruct")
    (cached / ".rayllm-complete").write_text("{}\n")
    # tiny-private has no cached weights: `ray-llm run` builds its tiny model (same shapes) offline.
    _upload(s3, build_tiny_lora(tmp_path / "adapters" / "tiny-a", cached), "tiny-chat/tiny-a")
    _upload(s3, build_tiny_lora(tmp_path / "adapters" / "tiny-b", cached, seed=7), "tiny-private/tiny-b")

    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "RAYLLM_CACHE_DIR": str(tmp_path / "user-cache"), **aws_env}
    args = [a for f in SCENARIOS for a in ("-f", str(CI / f))] + ["--model-cache", str(cache)]
    with served(args, port, env) as run:
        assert f"model cache: /models is {cache.resolve()} here" in run.text
        assert f"model tiny-chat: weights {cached.resolve()} (the model cache: /models/Qwen/Qwen2.5-0.5B-Instruct" \
            in run.text
        address = next(line for line in run.output if "local Ray: " in line and "--address" in line)
        address = address.split("local Ray: ", 1)[1].split(" ", 1)[0]

        # LoRA through Ray's OpenAI app: the adapter changes what the same greedy request returns
        ray_app = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="none", max_retries=0)
        listed = [m.id for m in ray_app.models.list().data]
        assert "tiny-chat" in listed and "tiny-chat:tiny-a" in listed, listed
        base, adapted = _tokens(ray_app, "tiny-chat"), _tokens(ray_app, "tiny-chat:tiny-a")
        assert base != adapted
        assert _tokens(ray_app, "tiny-chat:tiny-a") == adapted  # the loaded adapter is reused, deterministically
        chat = ray_app.chat.completions.create(model="tiny-chat:tiny-a", max_tokens=4, temperature=0,
                                               messages=[{"role": "user", "content": "Hello"}])
        # (random adapter weights may pick tokens that decode to nothing: count them instead)
        assert chat.choices[0].finish_reason == "length" and chat.usage.completion_tokens == 4

        # LoRA through the runtime's gateway, which hands "<model>:<adapter>" to the route-less app by Serve handle
        gateway = openai.OpenAI(base_url=f"{run.base_url}/gateway/v1", api_key="none", max_retries=0)
        private_base, private_adapted = _tokens(gateway, "tiny-private"), _tokens(gateway, "tiny-private:tiny-b")
        assert private_base != private_adapted
        missing = httpx.post(f"{run.base_url}/gateway/v1/completions", timeout=120,
                             json={"model": "tiny-private:no-such-adapter", "prompt": "x", "max_tokens": 2})
        assert missing.status_code in (400, 404), missing.text
        # an adapter name on a model without LoRA is an unknown model, as before
        assert httpx.post(f"{run.base_url}/gateway/v1/completions", timeout=60,
                          json={"model": "nope:tiny-b", "prompt": "x"}).status_code == 404

        # prefix-cache affinity routing: the router recorded the prompts it routed to the model's replica
        prompt = "You are a careful assistant for the ray-llm end-to-end test. Answer briefly."
        ray_app.chat.completions.create(model="tiny-chat", max_tokens=2, temperature=0,
                                        messages=[{"role": "system", "content": prompt},
                                                  {"role": "user", "content": "Hi"}])
        tree = _prefix_tree_match(address, "serve::chat::LLMServer:tiny-chat", prompt)
        assert prompt in tree["matched"] and tree["tenants"], tree
        assert run.stop() == 0
    # the one traceback is Ray's replica logging the missing adapter's 404 it raised for the client
    assert "Unable to find LoRA adapter config" in run.text
    assert [line for line in run.output if "Traceback" in line and "LLMServer:tiny-private" not in line] == []
