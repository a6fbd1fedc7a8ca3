#!/usr/bin/env python
"""Ingress overhead benchmark: our gateway path vs a bare Ray Serve deployment.

Both targets run on one local Ray Serve (loopback HTTP, free ports) and take
the same fixed delay before answering:

* ``bare``: one Serve deployment that parses the JSON body, sleeps, and
  returns a fixed chat.completion body (or a fixed SSE stream);
* ``ours``: ``rayllm_runtime.apps:build_gateway`` (FastAPI ingress with API-key
  auth, size limit, validation, audit log and metrics) -> router ->
  deployment handle -> the ``fake`` engine, which sleeps and returns the same
  text.

An async load generator (aiohttp, one connection per concurrent client)
sends OpenAI chat-completion requests closed-loop and records per-request
latency, throughput and, with stream=true, time to the first body byte.
It shares the machine's cores with Ray, so its CPU time is reported too.

    .venv/bin/python benchmarks/bench_ingress.py [--concurrency 1,16,64]
        [--requests N] [--delay-ms D] [--out benchmarks/results]

Writes ``<out>/ingress.json`` (raw summary, machine info, date) and
``<out>/ingress.md`` (tables).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
try:
    import rayllm_runtime  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "runtime"))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

MODEL_ID = "bench"
API_KEY = "sk-bench-key-0123456789"
RESPONSE_TEXT = "This is a fixed benchmark answer from the fake engine."
TARGET_OVERHEAD = 0.30  # our path may add at most 30 %
SCHEMA_VERSION = 1


# -- fixed bodies of the bare deployment -------------------------------------
def _bare_bodies() -> Dict[str, Any]:
    """The bare deployment's answers, shaped like ours (same text, same events)."""
    created = int(time.time())
    words = RESPONSE_TEXT.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    usage = {"prompt_tokens": 1, "completion_tokens": len(pieces), "total_tokens": len(pieces) + 1}
    full = {
        "id": "chatcmpl-bare",
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": RESPONSE_TEXT}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }

    def chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
        body = {
            "id": "chatcmpl-bare",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces]
    events += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    return {"json": json.dumps(full).encode(), "sse": events}


def _make_bare_deployment(delay_s: float, max_ongoing: int):
    from ray import serve
    from starlette.responses import Response, StreamingResponse

    bodies = _bare_bodies()

    @serve.deployment(name="BareFixed", max_ongoing_requests=max_ongoing, ray_actor_options={"num_cpus": 0.1})
    class BareFixed:
        def __init__(self):
            self.body = bodies["json"]
            self.events = bodies["sse"]
            self.delay_s = delay_s

        async def __call__(self, request):
            data = json.loads(await request.body())
            if data.get("stream"):
                async def events():
                    await asyncio.sleep(self.delay_s)
                    for event in self.events:
                        yield event

                return StreamingResponse(events(), media_type="text/event-stream")
            await asyncio.sleep(self.delay_s)
            return Response(self.body, media_type="application/json")

    return BareFixed.bind()


def _make_two_hop_app(delay_s: float, max_ongoing: int):
    """Reference for any gateway + per-model-deployment design: a minimal ingress
    calling a minimal engine deployment through a handle (by value, like ours)."""
    from ray import serve
    from starlette.responses import Response, StreamingResponse

    bodies = _bare_bodies()
    opts = {"max_ongoing_requests": max_ongoing, "ray_actor_options": {"num_cpus": 0.1}}

    @serve.deployment(name="BareEngine", **opts)
    class BareEngine:
        async def complete(self, payload):
            await asyncio.sleep(delay_s)
            return {"text": RESPONSE_TEXT, "finish_reason": "stop"}

        async def generate(self, payload):
            await asyncio.sleep(delay_s)
            yield {"text": RESPONSE_TEXT, "finish_reason": "stop"}

    @serve.deployment(name="BareIngress", **opts)
    class BareIngress:
        def __init__(self, engine):
            try:
                self.unary = engine.options(method_name="complete", _by_reference=False)
                self.streaming = engine.options(method_name="generate", stream=True, _by_reference=False)
            except TypeError:  # a Ray without by-value handles
                self.unary = engine.options(method_name="complete")
                self.streaming = engine.options(method_name="generate", stream=True)
            self.body = bodies["json"]
            self.events = b"".join(bodies["sse"])

        async def __call__(self, request):
            data = json.loads(await request.body())
            if not data.get("stream"):
                await self.unary.remote(data)
                return Response(self.body, media_type="application/json")
            gen = self.streaming.remote(data)
            await gen.__anext__()

            async def events():
                yield self.events
                async for _ in gen:
                    pass

            return StreamingResponse(events(), media_type="text/event-stream")

    return BareIngress.bind(BareEngine.bind())


# -- load generator -----------------------------------------------------------
def _percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _summary_ms(values: List[float]) -> Dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "p50": round(_percentile(ordered, 0.50) * 1000, 3),
        "p90": round(_percentile(ordered, 0.90) * 1000, 3),
        "p99": round(_percentile(ordered, 0.99) * 1000, 3),
        "mean": round(statistics.fmean(ordered) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


async def _load(url: str, headers: Dict[str, str], body: bytes, concurrency: int, total: int, stream: bool,
                procs: Optional[Dict[str, List[Any]]] = None) -> Dict[str, Any]:
    """Closed loop: `concurrency` clients share `total` requests.
    ``procs``: Ray's processes by role (see _ray_processes), whose CPU per request is reported."""
    import aiohttp

    latencies: List[float] = []
    ttfbs: List[float] = []
    errors: Dict[str, int] = {}
    remaining = total

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=120)

    async def client(session):
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if stream:
                        first = await response.content.readany()
                        ttfb = time.perf_counter() - start
                        rest = await response.read()
                        payload = first + rest
                        ok = response.status == 200 and payload.endswith(b"data: [DONE]\n\n")
                    else:
                        payload = await response.read()
                        ok = response.status == 200 and payload[:1] == b"{" and b'"choices"' in payload
                    elapsed = time.perf_counter() - start
                if ok:
                    latencies.append(elapsed)
                    if stream:
                        ttfbs.append(ttfb)
                else:
                    key = f"http_{response.status}"
                    errors[key] = errors.get(key, 0) + 1
            except Exception as exc:  # count, never abort the run
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1

    import psutil

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu_before = psutil.cpu_times()
        roles_before = _role_cpu(procs)
        proc_before = time.process_time()
        wall_start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - wall_start
        proc_cpu = time.process_time() - proc_before
        roles_after = _role_cpu(procs)
        cpu_after = psutil.cpu_times()

    busy = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system) + (
        getattr(cpu_after, "nice", 0) - getattr(cpu_before, "nice", 0)
    )
    result: Dict[str, Any] = {
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
        "latency_ms": _summary_ms(latencies),
        # CPU of this process (load generator + idle Ray driver) vs all busy CPU.
        "client_cpu_cores": round(proc_cpu / wall, 3) if wall > 0 else 0.0,
        "machine_busy_cores": round(busy / wall, 3) if wall > 0 else 0.0,
        "client_cpu_share": round(proc_cpu / busy, 3) if busy > 0 else None,
    }
    if procs is not None and latencies:
        # CPU seconds each role spent during the run, per answered request (ms).
        result["cpu_ms_per_request"] = {
            role: round(1000 * (roles_after[role] - roles_before.get(role, 0.0)) / len(latencies), 3)
            for role in roles_after
        }
    if stream:
        result["ttfb_ms"] = _summary_ms(ttfbs)
    result["_latencies"], result["_ttfbs"] = latencies, ttfbs
    return result


def _ray_processes() -> Dict[str, List[Any]]:
    """Ray's processes on this machine by role: "proxy", "<app>:<deployment>" for
    Serve replicas, "controller", "raylet", "gcs" and "other" (the rest of Ray).
    Taken after the apps are deployed; replicas are never restarted during a run."""
    import psutil

    roles: Dict[str, List[Any]] = {}
    for proc in psutil.process_iter(["cmdline", "name"]):
        cmd = proc.info["cmdline"] or []
        head = cmd[0] if cmd else ""
        name = proc.info["name"] or ""
        if head.startswith("ray::ServeReplica:"):
            role = head[len("ray::ServeReplica:"):]
        elif head.startswith("ray::ProxyActor"):
            role = "proxy"
        elif head.startswith("ray::ServeController"):
            role = "controller"
        elif head.startswith("ray::") or "default_worker.py" in " ".join(cmd[:3]):
            role = "other"
        elif name == "raylet" or head.endswith("/raylet"):
            role = "raylet"
        elif name == "gcs_server" or head.endswith("/gcs_server"):
            role = "gcs"
        else:
            continue
        roles.setdefault(role, []).append(proc)
    return roles


def _role_cpu(procs: Optional[Dict[str, List[Any]]]) -> Dict[str, float]:
    import psutil

    out: Dict[str, float] = {}
    for role, members in (procs or {}).items():
        total = 0.0
        for proc in members:
            try:
                times = proc.cpu_times()
            except psutil.Error:  # gone: counts nothing from here on
                continue
            total += times.user + times.system
        out[role] = total
    return out


def sum_errors(runs: List[Dict[str, Any]]) -> Dict[str, int]:
    """The runs' error counts ({kind: count}) added up."""
    errors: Dict[str, int] = {}
    for r in runs:
        for kind, count in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return errors


def _merge(runs: List[Dict[str, Any]], raw: List[List[float]]) -> Dict[str, Any]:
    """Rounds pooled: summed counts, wall-weighted throughput, per-round detail."""
    wall = sum(r["wall_s"] for r in runs)
    ok = sum(r["ok"] for r in runs)
    errors = sum_errors(runs)
    out = {
        "requests": sum(r["requests"] for r in runs),
        "ok": ok,
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(ok / wall, 2) if wall else 0.0,
        "latency_ms": {},
        "client_cpu_cores": round(sum(r["client_cpu_cores"] * r["wall_s"] for r in runs) / wall, 3) if wall else 0.0,
        "machine_busy_cores": round(sum(r["machine_busy_cores"] * r["wall_s"] for r in runs) / wall, 3) if wall else 0.0,
        "rounds": [{"throughput_rps": r["throughput_rps"], "latency_ms": r["latency_ms"]} for r in runs],
    }
    busy = out["machine_busy_cores"]
    out["client_cpu_share"] = round(out["client_cpu_cores"] / busy, 3) if busy else None
    with_cpu = [r for r in runs if r.get("cpu_ms_per_request")]
    if with_cpu:
        answered = sum(r["ok"] for r in with_cpu)
        roles = sorted({role for r in with_cpu for role in r["cpu_ms_per_request"]})
        out["cpu_ms_per_request"] = {
            role: round(sum(r["cpu_ms_per_request"].get(role, 0.0) * r["ok"] for r in with_cpu) / answered, 3)
            for role in roles
        } if answered else {}
    out["latency_ms"] = _summary_ms(raw[0])
    if raw[1]:
        out["ttfb_ms"] = _summary_ms(raw[1])
    return out


async def _load_collect(url, headers, body, concurrency, total, stream, sink, procs=None):
    """_load, moving the raw samples into sink (pooled percentiles across rounds)."""
    result = await _load(url, headers, body, concurrency, total, stream, procs)
    sink[0].extend(result.pop("_latencies"))
    sink[1].extend(result.pop("_ttfbs"))
    return result


# -- the run --------------------------------------------------------------------
def concurrency_levels(text: str) -> List[int]:
    """argparse type of --concurrency: "1,16,64" -> [1, 16, 64]; anything else is a usage error."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected comma-separated positive integers, e.g. 1,16,64")
    return levels


def _requests_for(concurrency: int, requests: int, per_client_cap: int) -> int:
    return max(concurrency, min(requests, per_client_cap * concurrency))


def machine_info() -> Dict[str, Any]:
    import psutil

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import hashlib

    import rayllm_runtime

    package = Path(rayllm_runtime.__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    info["rayllm_runtime_path"] = str(package)
    info["rayllm_runtime_sha256"] = digest.hexdigest()[:16]
    for module in ("ray", "fastapi", "starlette", "pydantic", "aiohttp", "uvicorn"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except Exception:
            pass
    return info


def run_benchmark(
    concurrency: List[int],
    requests: int,
    delay_ms: float,
    out_dir: Path,
    *,
    rounds: int = 2,
    warmup: int = 50,
    per_client_cap: int = 200,
    stream_fraction: float = 0.5,
    auth: bool = True,
    two_hop: bool = True,
    colocated: bool = True,
    name: str = "ingress",
    baseline: Optional[Dict[str, Any]] = None,
    log=print,
) -> Dict[str, Any]:
    import ray
    from ray import serve

    from rayllm_runtime.apps import build_gateway
    from rayllm_runtime.config import GatewayArgs
    from rayllm_runtime.testing import free_port, wait_http_ok

    delay_s = delay_ms / 1000.0
    max_ongoing = max(256, max(concurrency) * 2)
    small = {"num_cpus": 0.1}
    secret_dir = Path(tempfile.mkdtemp(prefix="rayllm-bench-"))
    (secret_dir / "api-key").write_text(API_KEY + "\n")
    gateway_args = GatewayArgs(
        models=[
            {
                "model_id": MODEL_ID,
                "engine": "fake",
                "engine_kwargs": {"response": RESPONSE_TEXT, "first_token_delay_s": delay_s},
                "deployment": {"max_ongoing_requests": max_ongoing, "ray_actor_options": small},
            }
        ],
        auth={"enabled": auth, "api_keys_path": str(secret_dir) if auth else None},
        ingress_deployment={"max_ongoing_requests": max_ongoing, "ray_actor_options": small},
    )
    # The same model with its engine inside the gateway replica (colocated: true): no second hop.
    colocated_args = GatewayArgs(
        models=[
            {
                "model_id": MODEL_ID,
                "engine": "fake",
                "engine_kwargs": {"response": RESPONSE_TEXT, "first_token_delay_s": delay_s},
                "colocated": True,
            }
        ],
        auth=gateway_args.auth,
        ingress_deployment=gateway_args.ingress_deployment,
    )

    info = machine_info()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(_make_bare_deployment(delay_s, max_ongoing), name="bare", route_prefix="/bare")
        serve.run(build_gateway(gateway_args), name="ours", route_prefix="/ours")
        if two_hop:
            serve.run(_make_two_hop_app(delay_s, max_ongoing), name="two_hop", route_prefix="/two_hop")
        if colocated:
            serve.run(build_gateway(colocated_args), name="colocated", route_prefix="/colocated")
        wait_http_ok(f"{base}/ours/healthz")

        targets = {
            "bare": (f"{base}/bare/v1/chat/completions", {"content-type": "application/json"}),
            "ours": (
                f"{base}/ours/v1/chat/completions",
                {"content-type": "application/json", **({"authorization": f"Bearer {API_KEY}"} if auth else {})},
            ),
        }
        if two_hop:
            targets["two_hop"] = (f"{base}/two_hop/v1/chat/completions", {"content-type": "application/json"})
        if colocated:
            targets["colocated"] = (f"{base}/colocated/v1/chat/completions", targets["ours"][1])
        names = list(targets)

        def body(stream: bool) -> bytes:
            return json.dumps(
                {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say something."}], "stream": stream}
            ).encode()

        results: Dict[str, Any] = {name: {} for name in names}
        procs = _ray_processes()
        for c in concurrency:
            for mode, stream in (("unary", False), ("stream", True)):
                total = _requests_for(c, requests, per_client_cap)
                if stream:
                    total = max(c, int(total * stream_fraction))
                runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
                samples: Dict[str, List[List[float]]] = {name: [[], []] for name in names}
                for r in range(rounds):
                    # Alternate the order so drift on a shared machine hits both.
                    order = names if r % 2 == 0 else names[::-1]
                    for target in order:
                        url, headers = targets[target]
                        if warmup:
                            asyncio.run(_load(url, headers, body(stream), c, max(c, warmup), stream))  # discarded
                        runs[target].append(
                            asyncio.run(_load_collect(url, headers, body(stream), c, total, stream, samples[target],
                                                      procs))
                        )
                for target in names:
                    merged = _merge(runs[target], samples[target])
                    results[target].setdefault(mode, {})[str(c)] = merged
                    ttfb = f" ttfb p50 {merged['ttfb_ms'].get('p50')} ms" if stream else ""
                    log(
                        f"c={c:<3} {mode:<6} {target:<9}: p50 {merged['latency_ms'].get('p50')} ms "
                        f"p99 {merged['latency_ms'].get('p99')} ms {merged['throughput_rps']} req/s{ttfb} "
                        f"errors {merged['errors'] or 0} client cpu {merged['client_cpu_cores']} cores"
                    )
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()

    overhead = _overhead(results, concurrency)
    overhead_vs_two_hop = _overhead(results, concurrency, reference="two_hop") if two_hop else None
    overhead_colocated = _overhead(results, concurrency, subject="colocated") if colocated else None
    report = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "ingress",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "config": {
            "concurrency": concurrency,
            "requests": requests,
            "per_client_cap": per_client_cap,
            "stream_fraction": stream_fraction,
            "rounds": rounds,
            "warmup": warmup,
            "delay_ms": delay_ms,
            "auth": auth,
            "two_hop_reference": two_hop,
            "colocated_target": colocated,
            "max_ongoing_requests": max_ongoing,
            "response_text": RESPONSE_TEXT,
            "target_overhead": TARGET_OVERHEAD,
            "client": "aiohttp closed loop, one connection per concurrent client",
        },
        "results": results,
        "overhead": overhead,
        # Ours vs the minimal two-hop app: what our own code adds beyond Serve's extra hop.
        "overhead_vs_two_hop": overhead_vs_two_hop,
        "within_target": all(o["within_target"] for o in overhead.values()),
        # The same gateway with the model colocated in its replica (ModelConfig.colocated).
        "overhead_colocated": overhead_colocated,
        "within_target_colocated": (
            all(o["within_target"] for o in overhead_colocated.values()) if overhead_colocated else None
        ),
    }
    if baseline is not None:
        report["baseline"] = compare_with_baseline(report, baseline)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(render_markdown(report))
    return report


def _overhead(results: Dict[str, Any], concurrency: List[int], reference: str = "bare",
              subject: str = "ours") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for c in concurrency:
        key = str(c)
        entry: Dict[str, Any] = {}
        for mode in ("unary", "stream"):
            bare, ours = results[reference][mode][key], results[subject][mode][key]
            p50_ratio = ours["latency_ms"]["p50"] / bare["latency_ms"]["p50"] if bare["latency_ms"] else None
            p99_ratio = ours["latency_ms"]["p99"] / bare["latency_ms"]["p99"] if bare["latency_ms"] else None
            tput_ratio = ours["throughput_rps"] / bare["throughput_rps"] if bare["throughput_rps"] else None
            entry[mode] = {
                "p50_latency_ratio": round(p50_ratio, 3) if p50_ratio else None,
                "p99_latency_ratio": round(p99_ratio, 3) if p99_ratio else None,
                "throughput_ratio": round(tput_ratio, 3) if tput_ratio else None,
                # "adds X %": extra latency, and extra time per request at full load.
                "p50_overhead_pct": round((p50_ratio - 1) * 100, 1) if p50_ratio else None,
                "throughput_overhead_pct": round((1 / tput_ratio - 1) * 100, 1) if tput_ratio else None,
            }
            if mode == "stream":
                b, o = bare.get("ttfb_ms", {}).get("p50"), ours.get("ttfb_ms", {}).get("p50")
                entry[mode]["ttfb_p50_ratio"] = round(o / b, 3) if b and o else None
        unary = entry["unary"]
        entry["within_target"] = bool(
            unary["p50_overhead_pct"] is not None
            and unary["p50_overhead_pct"] <= TARGET_OVERHEAD * 100
            and unary["throughput_overhead_pct"] <= TARGET_OVERHEAD * 100
        )
        out[key] = entry
    return out


def compare_with_baseline(report: Dict[str, Any], baseline: Dict[str, Any]) -> Dict[str, Any]:
    """Our path in ``report`` against the same cells of an earlier run (e.g. before a change)."""
    cells: Dict[str, Any] = {}
    for c in report["config"]["concurrency"]:
        key = str(c)
        for mode in ("unary", "stream"):
            try:
                old, new = baseline["results"]["ours"][mode][key], report["results"]["ours"][mode][key]
                old_ovh, new_ovh = baseline["overhead"][key][mode], report["overhead"][key][mode]
            except KeyError:
                continue
            cells[f"{key}/{mode}"] = {
                "p50_ms": [old["latency_ms"]["p50"], new["latency_ms"]["p50"]],
                "throughput_rps": [old["throughput_rps"], new["throughput_rps"]],
                "ttfb_p50_ms": [old.get("ttfb_ms", {}).get("p50"), new.get("ttfb_ms", {}).get("p50")],
                "p50_latency_ratio_vs_bare": [old_ovh["p50_latency_ratio"], new_ovh["p50_latency_ratio"]],
                "throughput_ratio_vs_bare": [old_ovh["throughput_ratio"], new_ovh["throughput_ratio"]],
            }
    return {
        "date": baseline.get("date"),
        "rayllm_runtime_sha256": baseline.get("machine", {}).get("rayllm_runtime_sha256"),
        "cells": cells,
    }


def _overhead_table(overhead: Dict[str, Any], concurrency: List[int]) -> List[str]:
    lines = [
        "| concurrency | mode | p50 ratio | p99 ratio | throughput ratio | p50 overhead % | throughput overhead % | TTFB p50 ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in concurrency:
        for mode in ("unary", "stream"):
            o = overhead[str(c)][mode]
            lines.append(
                f"| {c} | {mode} | {o['p50_latency_ratio']} | {o['p99_latency_ratio']} | {o['throughput_ratio']} | "
                f"{o['p50_overhead_pct']} | {o['throughput_overhead_pct']} | {o.get('ttfb_p50_ratio', '')} |"
            )
    return lines


def _cpu_table(report: Dict[str, Any]) -> List[str]:
    """Where the CPU goes: ms of CPU per answered non-streaming request, by Ray process."""
    res, cfg = report["results"], report["config"]
    if not any(res[name]["unary"][str(c)].get("cpu_ms_per_request") for name in res for c in cfg["concurrency"]):
        return []
    lines = [
        "",
        "## Where the CPU goes (non-streaming)",
        "",
        "Milliseconds of CPU per answered request in each Ray process during the run: the HTTP proxy, "
        "the target's own replicas (`app:deployment`), and the rest of Ray (controller, raylet, GCS, "
        "the other targets' idle replicas). On a machine that is CPU-bound at high concurrency, "
        "throughput follows the total.",
        "",
        "| concurrency | target | proxy | replicas (ms each) | rest of Ray | total |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for c in cfg["concurrency"]:
        for name in res:
            cpu = res[name]["unary"][str(c)].get("cpu_ms_per_request") or {}
            if not cpu:
                continue
            own = {role: ms for role, ms in cpu.items() if role.startswith(f"{name}:")}
            rest = sum(ms for role, ms in cpu.items() if role != "proxy" and role not in own)
            replicas = ", ".join(f"{role.split(':', 1)[1]} {ms}" for role, ms in sorted(own.items()))
            lines.append(f"| {c} | {name} | {cpu.get('proxy', 0.0)} | {replicas} | {round(rest, 3)} | "
                         f"{round(sum(cpu.values()), 3)} |")
    return lines


def render_markdown(report: Dict[str, Any]) -> str:
    cfg, info, res, ovh = report["config"], report["machine"], report["results"], report["overhead"]
    lines = [
        "# Ingress overhead benchmark",
        "",
        f"Date: {report['date']}  ",
        f"Machine: {info.get('cpu_model', '?')}, {info.get('cpu_count_logical')} logical CPUs, "
        f"{info.get('memory_gib')} GiB; Ray {info.get('ray_version', '?')}, Python {info.get('python')}  ",
        f"Delay: {cfg['delay_ms']} ms in both targets; auth {'on' if cfg['auth'] else 'off'}; "
        f"{cfg['rounds']} alternating rounds per cell; max_ongoing_requests {cfg['max_ongoing_requests']}.",
        "",
        "`bare`: one Serve deployment answering a fixed body after the delay. "
        "`ours`: build_gateway ingress (auth, validation, audit, metrics) -> router -> fake engine deployment. "
        "`two_hop` (when present): minimal ingress -> handle -> minimal engine deployment. "
        "`colocated` (when present): the same build_gateway ingress with the model's engine inside its "
        "replica (`colocated: true`), so no second Serve hop.",
        "The load generator runs on the same cores as Ray: `client cores` is its CPU use, "
        "`busy cores` the whole machine's.",
        "",
        "## Non-streaming chat completions",
        "",
        "| concurrency | target | requests | errors | p50 ms | p99 ms | req/s | client cores | busy cores |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cfg["concurrency"]:
        for name in res:
            r = res[name]["unary"][str(c)]
            lines.append(
                f"| {c} | {name} | {r['requests']} | {sum(r['errors'].values())} | {r['latency_ms'].get('p50')} | "
                f"{r['latency_ms'].get('p99')} | {r['throughput_rps']} | {r['client_cpu_cores']} | {r['machine_busy_cores']} |"
            )
    lines += [
        "",
        "## Streaming (stream=true): time to first body byte",
        "",
        "| concurrency | target | requests | errors | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | req/s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cfg["concurrency"]:
        for name in res:
            r = res[name]["stream"][str(c)]
            t = r.get("ttfb_ms", {})
            lines.append(
                f"| {c} | {name} | {r['requests']} | {sum(r['errors'].values())} | {t.get('p50')} | {t.get('p99')} | "
                f"{r['latency_ms'].get('p50')} | {r['latency_ms'].get('p99')} | {r['throughput_rps']} |"
            )
    lines += _cpu_table(report)
    lines += [
        "",
        f"## Overhead of our path (target: at most {int(cfg['target_overhead'] * 100)} %)",
        "",
        "Latency ratio = ours / bare p50; throughput overhead = bare / ours req/s - 1 (extra time per request at full load).",
        "",
    ]
    lines += _overhead_table(ovh, cfg["concurrency"])
    lines += ["", f"Within target (non-streaming, every concurrency): **{report['within_target']}**", ""]
    base = report.get("baseline")
    if base:
        lines += [
            f"## Our path: baseline ({base['date']}, runtime {base['rayllm_runtime_sha256']}) -> this run",
            "",
            "| concurrency/mode | p50 ms | req/s | TTFB p50 ms | p50 ratio vs bare | throughput ratio vs bare |",
            "|---|---|---|---|---|---|",
        ]
        for cell, v in base["cells"].items():
            fmt = lambda pair: f"{pair[0]} -> {pair[1]}" if pair[0] is not None else ""  # noqa: E731
            lines.append(
                f"| {cell} | {fmt(v['p50_ms'])} | {fmt(v['throughput_rps'])} | {fmt(v['ttfb_p50_ms'])} | "
                f"{fmt(v['p50_latency_ratio_vs_bare'])} | {fmt(v['throughput_ratio_vs_bare'])} |"
            )
        lines.append("")
    colo = report.get("overhead_colocated")
    if colo:
        lines += [
            f"## Overhead of our path with the model colocated (target: at most {int(cfg['target_overhead'] * 100)} %)",
            "",
            "`colocated` vs `bare`: the gateway's full code path (auth, validation, audit, metrics, OpenAI "
            "bodies) with the engine in the gateway replica (`colocated: true` on the model).",
            "",
        ]
        lines += _overhead_table(colo, cfg["concurrency"])
        lines += ["", f"Within target (colocated, non-streaming, every concurrency): "
                  f"**{report['within_target_colocated']}**", ""]
    two = report.get("overhead_vs_two_hop")
    if two:
        lines += [
            "## Ours vs the minimal two-hop app",
            "",
            "`two_hop`: a minimal ingress deployment calling a minimal engine deployment through a "
            "by-value handle, i.e. the extra Serve hop that any gateway + per-model deployment design pays. "
            "These ratios are what our own code (FastAPI, auth, validation, audit, metrics, OpenAI bodies) adds.",
            "",
            "| concurrency | mode | p50 ratio | throughput ratio | p50 overhead % | throughput overhead % | TTFB p50 ratio |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for c in cfg["concurrency"]:
            for mode in ("unary", "stream"):
                o = two[str(c)][mode]
                lines.append(
                    f"| {c} | {mode} | {o['p50_latency_ratio']} | {o['throughput_ratio']} | "
                    f"{o['p50_overhead_pct']} | {o['throughput_overhead_pct']} | {o.get('ttfb_p50_ratio', '')} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=concurrency_levels, default="1,16,64",
                        help="comma-separated client counts (default 1,16,64)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per cell and round (default 1000)")
    parser.add_argument(
        "--per-client-cap", type=int, default=200,
        help="at most this many requests per concurrent client per round (keeps concurrency 1 short)",
    )
    parser.add_argument("--delay-ms", type=float, default=20.0, help="fixed delay of both targets (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per cell (default 2)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests before each measured run")
    parser.add_argument("--no-auth", action="store_true", help="disable API-key auth on our path")
    parser.add_argument(
        "--no-two-hop", action="store_true", help="skip the minimal two-hop reference app (faster run)"
    )
    parser.add_argument(
        "--no-colocated", action="store_true", help="skip the colocated-model target (faster run)"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output directory")
    parser.add_argument("--name", default="ingress", help="output file name without extension (default ingress)")
    parser.add_argument("--baseline", help="an earlier ingress.json to compare our path with (e.g. before a change)")
    args = parser.parse_args(argv)
    report = run_benchmark(
        args.concurrency,
        args.requests,
        args.delay_ms,
        Path(args.out),
        rounds=args.rounds,
        warmup=args.warmup,
        per_client_cap=args.per_client_cap,
        auth=not args.no_auth,
        two_hop=not args.no_two_hop,
        colocated=not args.no_colocated,
        name=args.name,
        baseline=json.loads(Path(args.baseline).read_text()) if args.baseline else None,
    )
    print(f"wrote {Path(args.out) / args.name}.json and .md; within target: {report['within_target']}"
          f" (colocated: {report['within_target_colocated']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
