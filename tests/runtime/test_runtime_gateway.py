"""The gateway on a real local Ray Serve, driven by the openai client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from rayllm_runtime.testing import free_port, wait_http_ok

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

GOOD_KEY = "sk-test-good-key-123"
ALPHA = "Alpha answers here."
BETA = "Beta replies differently."
GAMMA = "Gamma lives upstream."
SMALL_CPU = {"ray_actor_options": {"num_cpus": 0.1}}


@pytest.fixture(scope="module")
def cluster(tiny_model_path, tmp_path_factory):
    import ray
    from ray import serve

    from rayllm_runtime.apps import build_gateway
    from rayllm_runtime.config import GatewayArgs

    secret = tmp_path_factory.mktemp("secret")
    (secret / "api-key").write_text(GOOD_KEY + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        backend = build_gateway(
            GatewayArgs(
                models=[{"model_id": "gamma", "engine": "fake", "engine_kwargs": {"response": GAMMA}, "deployment": SMALL_CPU}],
                ingress_deployment=SMALL_CPU,
            )
        )
        serve.run(backend, name="backend", route_prefix="/backend")
        main = build_gateway(
            {
                "models": [
                    {"model_id": "tiny", "engine": "cpu", "model_source": str(tiny_model_path), "deployment": SMALL_CPU},
                    {"model_id": "alpha", "engine": "fake", "engine_kwargs": {"response": ALPHA}, "deployment": SMALL_CPU},
                    {"model_id": "beta", "engine": "fake", "engine_kwargs": {"response": BETA}, "deployment": SMALL_CPU},
                    {"model_id": "broken", "engine": "fake", "engine_kwargs": {"fail": True}, "deployment": SMALL_CPU},
                ],
                "upstreams": [{"model_ids": ["gamma"], "base_url": f"{base}/backend"}],
                "auth": {"enabled": True, "api_keys_path": str(secret)},
                "max_request_bytes": 4096,
                "ingress_deployment": SMALL_CPU,
            }
        )
        serve.run(main, name="main", route_prefix="/")
        limited = build_gateway(
            GatewayArgs(
                models=[{"model_id": "delta", "engine": "fake", "deployment": SMALL_CPU}],
                rate_limit={"requests_per_minute": 1, "burst": 2},  # limits without `enabled` are on (prod's shape)
                ingress_deployment=SMALL_CPU,
            )
        )
        serve.run(limited, name="limited", route_prefix="/limited")
        # The same tiny model with its engine inside the gateway's replica.
        colo = build_gateway(
            GatewayArgs(
                models=[
                    {"model_id": "tiny", "engine": "cpu", "model_source": str(tiny_model_path), "colocated": True},
                    {"model_id": "alpha", "engine": "fake", "engine_kwargs": {"response": ALPHA}, "deployment": SMALL_CPU},
                ],
                ingress_deployment=SMALL_CPU,
            )
        )
        serve.run(colo, name="colo", route_prefix="/colo")
        wait_http_ok(f"{base}/healthz")
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture()
def client(cluster):
    return openai.OpenAI(base_url=f"{cluster}/v1", api_key=GOOD_KEY, max_retries=0)


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and "File \"" not in response.text
    return body["error"]


def post(base, path, body, key=GOOD_KEY, **kwargs):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    content = json.dumps(body) if isinstance(body, dict) else body
    return httpx.post(f"{base}{path}", content=content, headers={"content-type": "application/json", **headers}, timeout=60, **kwargs)


def test_models_listed(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["tiny", "alpha", "beta", "broken", "gamma"]


def test_chat_completion_cpu_engine(client):
    response = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=6, temperature=0
    )
    assert response.model == "tiny"
    assert response.id.startswith("chatcmpl-") and len(response.id) > 20
    assert response.created > 1_600_000_000
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 6 and response.usage.prompt_tokens > 0
    again = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=6, temperature=0
    )
    assert again.id != response.id
    assert again.choices[0].message.content == response.choices[0].message.content


def test_chat_completion_streaming(client):
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1


def test_completion_plain_and_streamed(client):
    response = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=4, temperature=0)
    assert response.model == "tiny" and response.choices[0].text
    assert response.usage.completion_tokens == 4
    streamed = list(client.completions.create(model="tiny", prompt="The quick brown", max_tokens=4, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == response.choices[0].text


def test_raw_sse_format(cluster):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", f"{cluster}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {GOOD_KEY}"}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == ALPHA


def test_router_reaches_the_right_deployment(client):
    from ray import serve

    def served(name):
        return serve.get_deployment_handle(f"RayLLMModel-{name}", app_name="main").stats.remote().result()

    before = {name: served(name)["requests_served"] for name in ("alpha", "beta")}
    a = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "x"}])
    b = client.chat.completions.create(model="beta", messages=[{"role": "user", "content": "x"}])
    b2 = client.chat.completions.create(model="beta", messages=[{"role": "user", "content": "y"}])
    assert (a.model, a.choices[0].message.content) == ("alpha", ALPHA)
    assert (b.model, b.choices[0].message.content) == ("beta", BETA)
    assert b2.choices[0].message.content == BETA
    after = {name: served(name) for name in ("alpha", "beta")}
    assert after["alpha"]["requests_served"] - before["alpha"] == 1
    assert after["beta"]["requests_served"] - before["beta"] == 2
    assert after["alpha"]["pid"] != after["beta"]["pid"]


def test_colocated_model_runs_in_the_gateway_replica(cluster, client):
    """A colocated model has no deployment of its own, answers exactly like the
    same model behind a deployment, streams, and its stream can be abandoned."""
    from ray import serve

    deployments = set(serve.status().applications["colo"].deployments)
    assert deployments == {"RayLLMGateway", "RayLLMModel-alpha"}
    colo = openai.OpenAI(base_url=f"{cluster}/colo/v1", api_key="unused", max_retries=0)
    assert [m.id for m in colo.models.list()] == ["tiny", "alpha"]
    ask = dict(model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=6, temperature=0)
    in_gateway = colo.chat.completions.create(**ask)
    via_deployment = client.chat.completions.create(**ask)
    assert in_gateway.choices[0].message.content == via_deployment.choices[0].message.content
    assert in_gateway.usage.completion_tokens == 6
    streamed = "".join(c.choices[0].delta.content or "" for c in colo.chat.completions.create(**ask, stream=True) if c.choices)
    assert streamed == in_gateway.choices[0].message.content
    with httpx.stream("POST", f"{cluster}/colo/v1/completions", timeout=60,
                      json={"model": "tiny", "prompt": "abandon me", "max_tokens": 40, "stream": True}) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # read one event, then hang up
    assert colo.chat.completions.create(**ask).choices[0].message.content == in_gateway.choices[0].message.content
    alpha = colo.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "x"}])
    assert alpha.choices[0].message.content == ALPHA


def test_upstream_forwarding(client):
    response = client.chat.completions.create(model="gamma", messages=[{"role": "user", "content": "x"}])
    assert response.choices[0].message.content == GAMMA
    streamed = client.chat.completions.create(model="gamma", messages=[{"role": "user", "content": "x"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == GAMMA


def test_auth(cluster):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}]}
    assert_openai_error(post(cluster, "/v1/chat/completions", body, key=None), 401)
    assert_openai_error(post(cluster, "/v1/chat/completions", body, key="sk-wrong"), 401)
    assert_openai_error(httpx.get(f"{cluster}/v1/models"), 401)
    assert post(cluster, "/v1/chat/completions", body).status_code == 200
    bad = openai.OpenAI(base_url=f"{cluster}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_rate_limit(cluster):
    body = {"model": "delta", "messages": [{"role": "user", "content": "x"}]}
    statuses = [post(cluster, "/limited/v1/chat/completions", body, key=None) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert_openai_error(statuses[2], 429)
    assert int(statuses[2].headers["retry-after"]) >= 1


def test_request_size_limit(cluster):
    big = {"model": "alpha", "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_openai_error(post(cluster, "/v1/chat/completions", big), 413)

    def chunked():  # no Content-Length: the real body size must be checked
        yield json.dumps(big).encode()

    assert_openai_error(post(cluster, "/v1/chat/completions", chunked()), 413)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"",
        {"model": "alpha"},
        {"model": "alpha", "messages": []},
        {"model": "alpha", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
        {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
        {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_bad_requests_are_400(cluster, body):
    assert_openai_error(post(cluster, "/v1/chat/completions", body), 400)


def test_bad_completion_and_unknown_model(cluster):
    assert_openai_error(post(cluster, "/v1/completions", {"model": "tiny", "prompt": ["a", "b"]}), 400)
    error = assert_openai_error(
        post(cluster, "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}), 404
    )
    assert error["code"] == "model_not_found"
    assert_openai_error(httpx.get(f"{cluster}/v1/nothing-here"), 404)


def test_engine_failure_is_clean_500(cluster, client):
    for stream in (False, True):
        body = {"model": "broken", "messages": [{"role": "user", "content": "x"}], "stream": stream}
        error = assert_openai_error(post(cluster, "/v1/chat/completions", body), 500)
        assert "fake engine" not in error["message"]
        assert error["type"] == "server_error"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])


def test_metrics_endpoint(cluster, client):
    from rayllm_runtime.metrics import METRIC_NAMES

    client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "x"}])
    text = httpx.get(f"{cluster}/metrics").text
    assert 'rayllm_requests_total{endpoint="chat",model="alpha",status="200"}' in text
    assert 'rayllm_tokens_total{kind="completion",model="alpha"}' in text
    assert 'rayllm_requests_in_flight{model="alpha"} 0.0' in text
    for name in ("rayllm_requests_total", "rayllm_request_latency_seconds_bucket", "rayllm_errors_total"):
        assert name in text
    assert all(n.startswith("rayllm_") for n in METRIC_NAMES)
