"""Unit tests without Ray: configs, engines, guards, audit, metrics."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from pydantic import ValidationError

from rayllm_runtime.apps import APP_BUILDERS, validate_app_args
from rayllm_runtime.audit import AUDIT_LOGGER_NAME, AuditLog
from rayllm_runtime.config import GatewayArgs, ModelConfig
from rayllm_runtime.engines import SamplingOptions, create_engine
from rayllm_runtime.engines.base import StopSequenceFilter
from rayllm_runtime.metrics import METRIC_NAMES, get_metrics
from rayllm_runtime.security import ApiKeyStore, TokenBucketLimiter, bearer_token, key_id


def collect(engine, source, sampling):
    async def run():
        return [c async for c in engine.generate(source, sampling, "test")]

    return asyncio.run(run())


def test_model_config_is_strict():
    with pytest.raises(ValidationError, match="extra"):
        ModelConfig(model_id="m", engine="fake", typo=1)
    with pytest.raises(ValidationError, match="expected only one"):
        ModelConfig(model_id="m", engine="fake", deployment={"num_replicas": 2, "autoscaling_config": {}})
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        ModelConfig(model_id="m", engine="vllm", deployment={"ray_actor_options": {"num_gpus": 0.5}})
    ok = ModelConfig(
        model_id="m",
        engine="vllm",
        engine_kwargs={"gpu_memory_utilization": 0.45},
        deployment={"ray_actor_options": {"num_gpus": 0.5}},
    )
    assert ok.deployment.to_serve_options()["ray_actor_options"] == {"num_gpus": 0.5}
    with pytest.raises(ValidationError, match="extra"):
        ModelConfig(model_id="m", engine="cpu", engine_kwargs={"bogus": True})


def test_gateway_args_rules_and_registry():
    with pytest.raises(ValidationError, match="twice"):
        GatewayArgs(models=[{"model_id": "a", "engine": "fake"}, {"model_id": "a", "engine": "fake"}])
    with pytest.raises(ValidationError, match="api_keys_path"):
        GatewayArgs(models=[{"model_id": "a", "engine": "fake"}], auth={"enabled": True})
    with pytest.raises(ValidationError, match="at least one model"):
        GatewayArgs()
    args = validate_app_args(
        "rayllm_runtime.apps:build_gateway",
        {"models": [{"model_id": "a", "engine": "fake"}], "upstreams": [{"model_ids": ["b"], "base_url": "http://x:8000/llm/v1/"}]},
    )
    assert args.upstreams[0].base_url == "http://x:8000/llm"
    assert APP_BUILDERS["rayllm_runtime.apps:build_gateway"] is GatewayArgs


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"models": [{"model_id": "a", "engine": "fake", "colocated": True},
                     {"model_id": "b", "engine": "fake", "colocated": True}]},
         "at most one per gateway"),
        ({"models": [{"model_id": "a", "engine": "fake", "colocated": True,
                      "deployment": {"num_replicas": 2}}]},
         "move them to ingress_deployment"),
        ({"models": [{"model_id": "a", "engine": "vllm", "colocated": True, "model_source": "x/y"}]},
         "num_gpus: 1"),
        ({"models": [{"model_id": "a", "engine": "vllm", "colocated": True, "model_source": "x/y"}],
          "ingress_deployment": {"ray_actor_options": {"num_gpus": 0.5}}},
         "gpu_memory_utilization <= 0.5"),
    ],
)
def test_colocated_model_rules(args, needle):
    with pytest.raises(ValidationError) as info:
        GatewayArgs.model_validate(args)
    assert needle in str(info.value)


def test_colocated_model_allowed_shapes():
    one = GatewayArgs.model_validate(
        {"models": [{"model_id": "a", "engine": "vllm", "colocated": True, "model_source": "x/y"},
                    {"model_id": "b", "engine": "fake"}],
         "ingress_deployment": {"num_replicas": 2, "ray_actor_options": {"num_gpus": 1, "accelerator_type": "L4"}}}
    )
    assert [m.colocated for m in one.models] == [True, False]


def test_colocated_backend_streams_and_cancels():
    """The in-process backend: same dicts as the deployment, and cancel() aborts the engine."""
    from rayllm_runtime.model_routing import ModelRouter

    args = GatewayArgs.model_validate(
        {"models": [{"model_id": "a", "engine": "fake", "colocated": True,
                     "engine_kwargs": {"response": "one two three four", "token_delay_s": 0.05}}]}
    )

    async def main():
        router = ModelRouter(args, handles={})
        await router.start()
        backend = router.resolve("a")
        assert backend.kind == "colocated"
        whole = await backend.complete({"request_id": "r1", "kind": "completion", "prompt": "x", "sampling": {}})
        assert whole["text"] == "one two three four" and whole["finish_reason"] == "stop"
        closed = []

        async def slow(source, sampling, request_id):
            from rayllm_runtime.engines import GenerationChunk

            try:
                for word in ("one ", "two ", "three "):
                    yield GenerationChunk(text=word)
                    await asyncio.sleep(0.05)
            finally:
                closed.append(request_id)  # where a real engine aborts the request

        backend.server.engine.generate = slow
        stream = backend.stream({"request_id": "r2", "kind": "completion", "prompt": "x", "sampling": {}})
        first = await stream.__anext__()
        assert first["text"] == "one "
        stream.cancel()
        for _ in range(50):
            if closed:
                break
            await asyncio.sleep(0.02)
        assert closed == ["r2"], "a cancelled stream must stop the engine's generation"
        await router.check_health()
        await router.close()

    asyncio.run(main())


def test_stop_filter_holds_back_partial_stop():
    f = StopSequenceFilter(["END"])
    out = f.feed("abc E") + f.feed("N") + f.feed("D tail")
    assert out == "abc " and f.stopped
    g = StopSequenceFilter(["END"])
    assert g.feed("abE") + g.flush() == "abE"


def test_fake_engine_stream_and_limits():
    engine = create_engine(ModelConfig(model_id="f", engine="fake", engine_kwargs={"response": "one two three four"}))
    chunks = collect(engine, "hello world", SamplingOptions(max_tokens=2))
    assert "".join(c.text for c in chunks) == "one two "
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage.completion_tokens == 2
    chunks = collect(engine, "x", SamplingOptions(stop=["three"]))
    assert "".join(c.text for c in chunks) == "one two " and chunks[-1].finish_reason == "stop"


def test_cpu_engine_chat_and_completion(tiny_model_path):
    engine = create_engine(ModelConfig(model_id="tiny", engine="cpu", model_source=str(tiny_model_path)))
    asyncio.run(engine.start())
    chunks = collect(engine, [{"role": "user", "content": "Hello"}], SamplingOptions(max_tokens=6, temperature=0))
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.usage.completion_tokens == 6 and last.usage.prompt_tokens > 3
    text = "".join(c.text for c in chunks)
    assert text
    # Greedy is deterministic; seeded sampling too.
    again = "".join(c.text for c in collect(engine, [{"role": "user", "content": "Hello"}], SamplingOptions(max_tokens=6, temperature=0)))
    assert again == text
    s1 = collect(engine, "The quick", SamplingOptions(max_tokens=5, temperature=1.0, top_p=0.9, seed=7))
    s2 = collect(engine, "The quick", SamplingOptions(max_tokens=5, temperature=1.0, top_p=0.9, seed=7))
    assert [c.text for c in s1] == [c.text for c in s2]
    # n=2: two choices (index 0 then 1), usage summed on the very last chunk.
    both = collect(engine, "x", SamplingOptions(n=2, max_tokens=3, temperature=0))
    assert [c.index for c in both if c.finish_reason] == [0, 1]
    assert both[-1].usage.completion_tokens == 6


def test_api_keys_from_secret_dir(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "team-a").write_text("key-aaa\n")
    (secret / "team-b").write_text("# comment\nkey-bbb\n\n")
    (secret / "..data").mkdir()  # Kubernetes bookkeeping entry
    store = ApiKeyStore(str(secret), reload_interval_s=0)
    assert store.verify("key-aaa") == key_id("key-aaa")
    assert store.verify("key-bbb") is not None
    assert store.verify("nope") is None and store.verify(None) is None
    assert "key-aaa" not in key_id("key-aaa")
    assert bearer_token("Bearer abc") == "abc" and bearer_token("Basic abc") is None


def test_token_bucket():
    limiter = TokenBucketLimiter(requests_per_minute=60, burst=2)
    assert limiter.acquire("k", now=0)[0] and limiter.acquire("k", now=0)[0]
    allowed, wait = limiter.acquire("k", now=0)
    assert not allowed and 0.9 < wait <= 1.0
    assert limiter.acquire("other", now=0)[0]
    assert limiter.acquire("k", now=1.01)[0]


def test_audit_log_prompts_only_when_enabled(caplog):
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(json.loads(record.getMessage()))
    logger.addHandler(handler)
    try:
        common = dict(request_id="r", key_id="key-1", endpoint="chat", model="m", status=200, latency_s=0.01,
                      prompt_tokens=3, completion_tokens=4, prompt="secret prompt")
        AuditLog(include_prompts=False).record(**common)
        AuditLog(include_prompts=True).record(**common)
    finally:
        logger.removeHandler(handler)
    assert "prompt" not in records[0] and records[0]["prompt_tokens"] == 3
    assert records[1]["prompt"] == "secret prompt"
    assert {"time", "request_id", "key_id", "model", "status", "latency_ms"} <= set(records[0])


def test_metric_names_are_exposed():
    metrics = get_metrics()
    metrics.requests.labels(model="m", endpoint="chat", status="200").inc()
    metrics.latency.labels(model="m", endpoint="chat").observe(0.1)
    metrics.ttft.labels(model="m").observe(0.1)
    metrics.tokens.labels(model="m", kind="prompt").inc(1)
    metrics.errors.labels(model="m", type="x").inc()
    metrics.in_flight.labels(model="m").set(0)
    text = metrics.render().decode()
    for name in METRIC_NAMES:
        assert name.startswith("rayllm_")
        assert f"\n{name}" in text or f"\n{name}_bucket" in text, name


def test_ray_serve_validates_builder_args_with_our_model():
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from rayllm_runtime.apps import build_gateway

    with pytest.raises(ValidationError, match="engine"):
        call_user_app_builder_with_args_if_necessary(build_gateway, {"models": [{"model_id": "x", "engine": "warp"}]})
    app = call_user_app_builder_with_args_if_necessary(build_gateway, {"models": [{"model_id": "x", "engine": "fake"}]})
    assert isinstance(app, Application)
