"""Runtime reliability on a real local Ray Serve (loopback, free ports).

Sustained load, loss of a model replica mid-load, an engine that raises,
and bad requests interleaved with good ones: every request gets a complete,
well-formed answer or a clean OpenAI-shaped error, and nothing hangs.
Single-request error shapes are covered by tests/runtime/test_runtime_gateway.py;
these tests run the same paths concurrently and count every outcome.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest

from rayllm_runtime.testing import free_port, wait_http_ok

aiohttp = pytest.importorskip("aiohttp")  # ships with ray[serve]

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

APP = "faults"
KEY = "sk-reliability-key-0123456789"
STEADY = "Steady answers arrive complete and well formed."
FLAKY = "Flaky replicas may vanish at any time."
SMALL_CPU = {"num_cpus": 0.1}
MAX_BODY = 4096
CLIENT_TIMEOUT_S = 30.0

# Text that must never reach a client: tracebacks, source paths, reprs.
LEAK_MARKERS = (
    "Traceback",
    'File "',
    ".py",
    "site-packages",
    "/work/",
    "/tmp/",
    "ray::",
    "RayTaskError",
    "ActorDiedError",
    "FakeEngineFailure",
    "fail: true",
    "object at 0x",
)


# -- cluster ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    import ray
    from ray import serve

    from rayllm_runtime.apps import build_gateway
    from rayllm_runtime.config import GatewayArgs

    secret = tmp_path_factory.mktemp("secret")
    (secret / "api-key").write_text(KEY + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = GatewayArgs(
            models=[
                {
                    "model_id": "steady",
                    "engine": "fake",
                    "engine_kwargs": {"response": STEADY, "first_token_delay_s": 0.002},
                    "deployment": {"max_ongoing_requests": 256, "ray_actor_options": SMALL_CPU},
                },
                {
                    # Slow enough that requests are in flight (some mid-stream) when a replica is killed.
                    "model_id": "flaky",
                    "engine": "fake",
                    "engine_kwargs": {"response": FLAKY, "first_token_delay_s": 0.1, "token_delay_s": 0.02},
                    "deployment": {
                        "num_replicas": 2,
                        "max_ongoing_requests": 128,
                        "health_check_period_s": 1,
                        "ray_actor_options": SMALL_CPU,
                    },
                },
                {
                    "model_id": "broken",
                    "engine": "fake",
                    "engine_kwargs": {"fail": True},
                    "deployment": {"ray_actor_options": SMALL_CPU},
                },
            ],
            auth={"enabled": True, "api_keys_path": str(secret)},
            max_request_bytes=MAX_BODY,
            ingress_deployment={"max_ongoing_requests": 512, "ray_actor_options": SMALL_CPU},
        )
        serve.run(build_gateway(args), name=APP, route_prefix="/")
        wait_http_ok(f"{base}/healthz")
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


# -- load generator -----------------------------------------------------------------
@dataclass
class Req:
    kind: str
    body: Any = None  # bytes, dict (JSON-encoded), or a zero-arg callable giving an async iterator (chunked)
    method: str = "POST"
    path: str = "/v1/chat/completions"
    key: Optional[str] = KEY
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class Res:
    req: Req
    status: Optional[int]
    content_type: str
    body: bytes
    headers: Dict[str, str]
    error: Optional[str]
    elapsed_s: float
    started: float = 0.0


def chat(model: str, stream: bool = False, **extra) -> Dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream, **extra}


async def _fire(base: str, reqs: Sequence[Req], concurrency: int, on_done: Optional[Callable[[int], None]] = None) -> List[Res]:
    results: List[Optional[Res]] = [None] * len(reqs)
    order = iter(range(len(reqs)))
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker():
            nonlocal done
            for i in order:
                req = reqs[i]
                headers = {"content-type": "application/json", **req.headers}
                if req.key:
                    headers["authorization"] = f"Bearer {req.key}"
                data = req.body
                if isinstance(data, dict):
                    data = json.dumps(data).encode()
                elif callable(data):
                    data = data()
                start = time.monotonic()
                try:
                    async with session.request(req.method, base + req.path, data=data, headers=headers) as r:
                        payload = await r.read()
                        results[i] = Res(req, r.status, r.headers.get("content-type", ""), payload,
                                         {k.lower(): v for k, v in r.headers.items()}, None,
                                         time.monotonic() - start, start)
                except Exception as exc:  # counted: a lost request
                    results[i] = Res(req, None, "", b"", {}, type(exc).__name__, time.monotonic() - start, start)
                done += 1
                if on_done is not None:
                    on_done(done)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def fire(base: str, reqs: Sequence[Req], concurrency: int) -> List[Res]:
    return asyncio.run(_fire(base, reqs, concurrency))


# -- checks -------------------------------------------------------------------------
def assert_no_leak(text: str) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{marker!r} leaked to the client: {text[:300]}"


def check_error(res: Res) -> Dict[str, Any]:
    """A clean OpenAI-shaped error: JSON {"error": {message, type, param, code}}, no internals."""
    assert res.content_type.startswith("application/json"), (res.status, res.content_type, res.body[:200])
    data = json.loads(res.body)
    assert set(data) == {"error"}, data
    assert set(data["error"]) == {"message", "type", "param", "code"}, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    assert_no_leak(res.body.decode())
    return data["error"]


def check_chat(res: Res, model: str, text: str) -> str:
    assert res.status == 200, (res.status, res.body[:300])
    assert res.content_type.startswith("application/json")
    data = json.loads(res.body)
    assert data["object"] == "chat.completion" and data["model"] == model
    assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
    (choice,) = data["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == text
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["completion_tokens"] == len(text.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert res.headers.get("x-request-id")
    return data["id"]


def sse_events(res: Res) -> List[str]:
    raw = res.body.decode()
    assert raw.endswith("\n\n"), raw[-200:]
    events = [e for e in raw.split("\n\n") if e]
    assert events and all(e.startswith("data: ") for e in events), raw[:300]
    return [e[len("data: "):] for e in events]


def check_stream(res: Res, model: str, text: str) -> str:
    assert res.status == 200, (res.status, res.body[:300])
    assert res.content_type.startswith("text/event-stream")
    events = sse_events(res)
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    return chunks[0]["id"]


def requests_total(base: str, model: str, status: str) -> float:
    """rayllm_requests_total{endpoint="chat", model, status} from /metrics (0 when absent)."""
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if not line.startswith("rayllm_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels == {"endpoint": "chat", "model": model, "status": status}:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- (1) sustained load -------------------------------------------------------------
def test_10k_requests_at_concurrency_64_none_lost(gateway):
    total, stream_every = 10_000, 10
    reqs = [Req("stream" if i % stream_every == 0 else "chat", chat("steady", stream=i % stream_every == 0))
            for i in range(total)]
    served_before = requests_total(gateway, "steady", "200")
    start = time.monotonic()
    results = fire(gateway, reqs, concurrency=64)
    elapsed = time.monotonic() - start

    lost = [r for r in results if r.status is None]
    server_errors = [r for r in results if r.status is not None and r.status >= 500]
    ids = set()
    for r in results:
        if r.status == 200:
            ids.add(check_stream(r, "steady", STEADY) if r.req.kind == "stream" else check_chat(r, "steady", STEADY))
    print(f"\n10k load: {len(results)} answered, {len(lost)} lost, {len(server_errors)} 5xx, "
          f"{len(ids)} unique ids, {elapsed:.1f} s ({total / elapsed:.0f} req/s)")
    assert len(results) == total
    assert not lost, {r.error for r in lost}
    assert not server_errors, [(r.status, r.body[:200]) for r in server_errors[:3]]
    assert all(r.status == 200 for r in results)
    assert len(ids) == total  # every answer distinct and complete
    # The gateway counted exactly these requests as served.
    assert requests_total(gateway, "steady", "200") - served_before == total


# -- (3) an engine that raises ----------------------------------------------------------
def test_engine_failure_under_concurrency_is_clean_500(gateway):
    reqs = [Req("broken", chat("broken", stream=i % 2 == 1)) for i in range(120)]
    results = fire(gateway, reqs, concurrency=24)
    assert len(results) == len(reqs) and all(r.status == 500 for r in results), {r.status for r in results}
    for r in results:
        error = check_error(r)
        assert error["type"] == "server_error" and error["code"] == "internal_error"
        # The message names the request id (for support) and nothing else.
        assert r.headers["x-request-id"] in error["message"]
        assert "fake engine" not in error["message"]
    # The gateway itself is unharmed.
    ok = fire(gateway, [Req("chat", chat("steady")) for _ in range(20)], concurrency=8)
    assert all(check_chat(r, "steady", STEADY) for r in ok)


# -- (4) bad requests interleaved with good ones ------------------------------------------
def _oversize_chunked():
    async def gen():
        for _ in range(6):
            yield b'{"model": "steady", "pad": "' + b"x" * 1000 + b'",'
        yield b'"messages": [{"role": "user", "content": "x"}]}'

    return gen()


BAD_REQUESTS: Dict[str, tuple] = {
    # kind: (request, expected status)
    "malformed_json": (Req("malformed_json", b'{"model": "steady", "messages": [}'), 400),
    "not_utf8": (Req("not_utf8", b"\xff\xfe\xfd{}"), 400),
    "empty_body": (Req("empty_body", b""), 400),
    "json_null": (Req("json_null", b"null"), 400),
    "deep_nesting": (Req("deep_nesting", b"[" * 1500 + b"]" * 1500), 400),
    "oversize": (Req("oversize", chat("steady", pad="x" * (MAX_BODY + 100))), 413),
    "oversize_chunked": (Req("oversize_chunked", _oversize_chunked), 413),
    "no_auth": (Req("no_auth", chat("steady"), key=None), 401),
    "wrong_key": (Req("wrong_key", chat("steady"), key="sk-wrong-key"), 401),
    "basic_auth": (Req("basic_auth", chat("steady"), key=None, headers={"authorization": "Basic Zm9vOmJhcg=="}), 401),
    "messages_string": (Req("messages_string", {"model": "steady", "messages": "hello"}), 400),
    "model_int": (Req("model_int", {"model": 7, "messages": [{"role": "user", "content": "x"}]}), 400),
    "max_tokens_str": (Req("max_tokens_str", chat("steady", max_tokens="many")), 400),
    "temperature_str": (Req("temperature_str", chat("steady", temperature="hot")), 400),
    "content_int": (Req("content_int", {"model": "steady", "messages": [{"role": "user", "content": 5}]}), 400),
    "n_zero": (Req("n_zero", chat("steady", n=0)), 400),
    "stream_list": (Req("stream_list", {**chat("steady"), "stream": []}), 400),
    "unknown_model": (Req("unknown_model", chat("no-such-model")), 404),
    "wrong_method": (Req("wrong_method", None, method="GET"), 405),
}


def test_bad_requests_interleaved_with_good_ones(gateway):
    kinds = list(BAD_REQUESTS)
    reqs: List[Req] = []
    for i in range(40 * len(kinds)):
        if i % 3 == 0:
            reqs.append(Req("good_stream", chat("steady", stream=True)) if i % 2 else Req("good", chat("steady")))
        else:
            reqs.append(BAD_REQUESTS[kinds[i % len(kinds)]][0])
    results = fire(gateway, reqs, concurrency=32)

    counts: Dict[str, Dict[int, int]] = {}
    for r in results:
        assert r.status is not None, (r.req.kind, r.error)
        counts.setdefault(r.req.kind, {}).setdefault(r.status, 0)
        counts[r.req.kind][r.status] += 1
        assert r.status < 500, (r.req.kind, r.status, r.body[:300])
        if r.req.kind == "good":
            check_chat(r, "steady", STEADY)
        elif r.req.kind == "good_stream":
            check_stream(r, "steady", STEADY)
        else:
            expected = BAD_REQUESTS[r.req.kind][1]
            assert r.status == expected, (r.req.kind, r.status, r.body[:300])
            check_error(r)
            if expected == 401:
                assert r.headers.get("www-authenticate") == "Bearer"
    print("\nbad-request mix:", json.dumps(counts, sort_keys=True))
    assert len(results) == len(reqs)
    assert set(counts) == set(kinds) | {"good", "good_stream"}


# -- (2) a model replica dies mid-load ---------------------------------------------------
def _flaky_replicas() -> List[str]:
    import ray

    prefix = f"SERVE_REPLICA::{APP}#RayLLMModel-flaky#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def _flaky_running() -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    if app is None or "RayLLMModel-flaky" not in app.deployments:
        return 0
    return app.deployments["RayLLMModel-flaky"].replica_states.get("RUNNING", 0)


def test_replica_killed_mid_load_is_replaced_and_answers_stay_clean(gateway):
    import ray

    before = _flaky_replicas()
    assert len(before) == 2 and _flaky_running() == 2
    victim = before[0]
    total, kill_after = 600, 150
    reqs = [Req("stream" if i % 4 == 0 else "chat", chat("flaky", stream=i % 4 == 0)) for i in range(total)]
    killed_at: List[float] = []

    async def run():
        loop = asyncio.get_running_loop()
        reached = asyncio.Event()

        def on_done(n):
            if n == kill_after:
                reached.set()

        async def killer():
            await reached.wait()
            handle = ray.get_actor(victim, namespace="serve")
            await loop.run_in_executor(None, lambda: ray.kill(handle, no_restart=True))
            killed_at.append(time.monotonic())

        kill_task = asyncio.ensure_future(killer())
        results = await _fire(gateway, reqs, 32, on_done)
        await kill_task
        return results

    start = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - start
    assert killed_at, "the replica was never killed"

    ok, clean_errors, in_band_errors = 0, {}, 0
    for r in results:
        assert r.status is not None, f"request lost or hung: {r.error} after {r.elapsed_s:.1f} s"
        if r.status == 200 and r.req.kind == "chat":
            check_chat(r, "flaky", FLAKY)
            ok += 1
        elif r.status == 200:
            events = sse_events(r)
            if events[-1] == "[DONE]":
                check_stream(r, "flaky", FLAKY)
                ok += 1
            else:  # headers were sent before the replica died: the error is reported in-band
                error = json.loads(events[-1])
                assert set(error) == {"error"} and error["error"]["type"] == "server_error", events[-1]
                assert_no_leak(r.body.decode())
                in_band_errors += 1
        else:
            error = check_error(r)
            assert r.status in (500, 502, 503), (r.status, error)
            clean_errors[r.status] = clean_errors.get(r.status, 0) + 1
    straddling = [r for r in results if r.started < killed_at[0] < r.started + r.elapsed_s]
    print(f"\nreplica kill: {total} requests in {elapsed:.1f} s: {ok} ok, clean errors {clean_errors}, "
          f"in-band stream errors {in_band_errors}; {len(straddling)} in flight at the kill, slowest "
          f"{max((r.elapsed_s for r in results), default=0):.2f} s")
    assert len(results) == total
    assert len(straddling) >= 8, "the kill must hit requests in flight"
    assert ok + sum(clean_errors.values()) + in_band_errors == total
    # Requests that had not started answering are retried on the other replica;
    # only streams already under way can end in an (in-band) error.
    assert not clean_errors, clean_errors
    assert ok >= total - 32

    # Serve replaces the dead replica: two RUNNING again, the victim gone.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = _flaky_replicas()
        if _flaky_running() == 2 and victim not in now and len(now) == 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"replica not replaced: running={_flaky_running()} replicas={_flaky_replicas()}")
    print(f"replaced {time.monotonic() - killed_at[0]:.1f} s after the kill")

    after = fire(gateway, [Req("chat", chat("flaky")) for _ in range(100)], concurrency=16)
    assert all(check_chat(r, "flaky", FLAKY) for r in after)


# -- the retry policy, without a cluster ---------------------------------------------------
def test_replica_loss_is_retried_and_other_failures_are_not():
    from rayllm_runtime.openai.serving import (
        REPLICA_LOSS_RETRIES,
        RequestContext,
        is_replica_loss,
        map_exception,
        with_replica_retry,
    )

    class ActorUnavailableError(Exception):  # stands in for Ray's class (matched by name)
        pass

    class EngineBoom(RuntimeError):
        pass

    ctx = RequestContext(request_id="r-1", endpoint="chat")

    def flaky(failures, exc_type):
        calls = []

        async def call():
            calls.append(1)
            if len(calls) <= failures:
                raise exc_type("gone")
            return "answer"

        return call, calls

    call, calls = flaky(REPLICA_LOSS_RETRIES, ActorUnavailableError)
    assert asyncio.run(with_replica_retry(call, ctx)) == "answer" and len(calls) == REPLICA_LOSS_RETRIES + 1

    call, calls = flaky(REPLICA_LOSS_RETRIES + 1, ActorUnavailableError)
    with pytest.raises(ActorUnavailableError) as lost:
        asyncio.run(with_replica_retry(call, ctx))
    assert len(calls) == REPLICA_LOSS_RETRIES + 1
    error = map_exception(lost.value, ctx)
    assert (error.status_code, error.code, error.headers.get("Retry-After")) == (503, "model_unavailable", "1")
    assert_no_leak(json.dumps(error.body()))

    call, calls = flaky(1, EngineBoom)  # an engine failure is not retried
    with pytest.raises(EngineBoom):
        asyncio.run(with_replica_retry(call, ctx))
    assert len(calls) == 1 and not is_replica_loss(EngineBoom("x"))
    assert map_exception(EngineBoom("x"), ctx).status_code == 500
