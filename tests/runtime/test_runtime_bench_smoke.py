"""benchmarks/bench_ingress.py runs end to end at a tiny size and writes its reports.

Checks the output's structure only: timings on a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import import_benchmark

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_ingress.py"


def test_bench_ingress_smoke(tmp_path):
    pytest.importorskip("aiohttp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        # 8 requests a cell: with fewer, a bare replica's few ms of CPU a cell could read 0 clock
        # ticks (10 ms each) in every cell, and the sum check below failed now and then.
        [sys.executable, str(SCRIPT), "--concurrency", "1,2", "--requests", "8", "--per-client-cap", "8",
         "--rounds", "1", "--warmup", "1", "--delay-ms", "5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=170, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    report = json.loads((tmp_path / "ingress.json").read_text())
    assert report["benchmark"] == "ingress" and report["schema_version"] == 1
    assert {"date", "machine", "config", "results", "overhead", "within_target"} <= set(report)
    assert {"cpu_count_logical", "ray_version", "python", "rayllm_runtime_sha256"} <= set(report["machine"])
    assert report["config"]["concurrency"] == [1, 2] and report["config"]["delay_ms"] == 5
    assert isinstance(report["within_target"], bool)
    for target in ("bare", "ours", "two_hop", "colocated"):
        for mode in ("unary", "stream"):
            for level in ("1", "2"):
                cell = report["results"][target][mode][level]
                assert {"requests", "ok", "errors", "throughput_rps", "latency_ms", "client_cpu_cores",
                        "machine_busy_cores", "client_cpu_share", "rounds"} <= set(cell)
                assert {"p50", "p90", "p99", "mean", "max"} <= set(cell["latency_ms"])
                assert cell["ok"] == cell["requests"] and not cell["errors"], (target, mode, level, cell)
                if mode == "stream":
                    assert {"p50", "p99"} <= set(cell["ttfb_ms"])
                # CPU per request by Ray process: the proxy and the target's own replicas are found. At this
                # size a cell lasts a few clock ticks, so one cell may read 0; the target's cells together may not.
                cpu = cell["cpu_ms_per_request"]
                own = [role for role in cpu if role.startswith(f"{target}:")]
                assert "proxy" in cpu and own and min(cpu.values()) >= 0, (target, mode, cpu)
        cells = [report["results"][target][m][lv]["cpu_ms_per_request"] for m in ("unary", "stream") for lv in ("1", "2")]
        assert sum(ms for cpu in cells for role, ms in cpu.items() if role.startswith(f"{target}:")) > 0, target
    # The split path has a model replica of its own; the colocated one does not.
    assert any("RayLLMModel" in role for role in report["results"]["ours"]["unary"]["2"]["cpu_ms_per_request"])
    assert not any("RayLLMModel" in role and role.startswith("colocated:")
                   for role in report["results"]["colocated"]["unary"]["2"]["cpu_ms_per_request"])
    assert isinstance(report["within_target_colocated"], bool)
    for level in ("1", "2"):
        assert set(report["overhead_colocated"][level]) == set(report["overhead"][level])
        overhead = report["overhead"][level]
        assert isinstance(overhead["within_target"], bool)
        assert {"p50_latency_ratio", "p99_latency_ratio", "throughput_ratio", "p50_overhead_pct",
                "throughput_overhead_pct"} <= set(overhead["unary"])
        assert "ttfb_p50_ratio" in overhead["stream"]

    markdown = (tmp_path / "ingress.md").read_text()
    assert markdown.startswith("# Ingress overhead benchmark")
    for heading in ("## Non-streaming chat completions", "## Streaming (stream=true)", "## Overhead of our path",
                    "## Overhead of our path with the model colocated", "## Where the CPU goes"):
        assert heading in markdown


# -- benchmarks/bench_vllm.py: vLLM (GPU or its CPU build), smoke-tested on the transformers engine ------------

VLLM_SCRIPT = REPO / "benchmarks" / "bench_vllm.py"


def test_bench_vllm_runs_our_path_on_cpu_and_reports(tmp_path):
    """The load generator, token accounting and reports against our real gateway (transformers engine, tiny
    model); `make bench-vllm` runs the vLLM-vs-Ray comparison itself (vLLM's CPU build here)."""
    pytest.importorskip("aiohttp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(VLLM_SCRIPT), "--engine", "cpu", "--targets", "ours", "--concurrency", "1,2",
         "--requests", "4", "--warmup", "1", "--max-tokens", "6", "--rounds", "1", "--out", str(tmp_path),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=170, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "vllm-cpu.json").read_text())
    assert report["benchmark"] == "vllm" and report["config"]["targets"] == ["ours"]
    assert report["comparison"] is None and report["within_target"] is None  # one target: nothing to compare
    for level in ("1", "2"):
        cell = report["results"]["ours"][level]
        assert cell["ok"] == cell["requests"] == 4 and not cell["errors"], cell
        # Every request streamed exactly max_tokens tokens (usage from the server), and throughput counts them.
        assert cell["completion_tokens_per_request"] == [6] and cell["output_tokens"] == 24
        assert cell["output_tokens_per_s"] > 0
        assert 0 < cell["ttft_ms"]["p50"] <= cell["latency_ms"]["p50"]
    assert (tmp_path / "vllm-cpu.md").read_text().startswith("# vLLM: our model deployment vs Ray")


def test_bench_usage_errors():
    cases = [(VLLM_SCRIPT, ["--engine", "cpu"]),                    # cpu with Ray's target
             (VLLM_SCRIPT, ["--targets", "ours,nope"]),              # an unknown target
             (VLLM_SCRIPT, ["--concurrency", "1,x"]),                # not a number
             (SCRIPT, ["--concurrency", "0"])]                       # bench_ingress: not positive
    for script, args in cases:
        proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                              timeout=120, cwd=REPO)
        assert proc.returncode == 2 and "--" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_bench_vllm_builds_both_apps_with_the_same_engine_settings():
    """Ray's app is built from an LLMConfig Ray's own models accept, with our deployment's engine_kwargs."""
    pytest.importorskip("ray.serve.llm")
    import argparse

    from ray.serve._private.build_app import build_app

    bench = import_benchmark("bench_vllm")
    for device in ("cuda", "cpu"):
        args = argparse.Namespace(engine="vllm", gpu_memory_utilization=0.5, max_model_len=1024, enforce_eager=True,
                                  max_ongoing=128, device=device, stream_interval_ms=50.0)
        ray_app = build_app(bench.build_ray("/models/tiny", args), name="ray")
        ours_app = build_app(bench.build_ours("/models/tiny", args), name="ours")
        server = next(d for d in ray_app.deployments if d.name.startswith("LLMServer"))
        model = next(d for d in ours_app.deployments if d.name.startswith("RayLLMModel"))
        assert server._deployment_config.max_ongoing_requests == model._deployment_config.max_ongoing_requests == 128
        llm_config = server.init_kwargs["llm_config"]  # Ray's LLMServer takes its LLMConfig by keyword
        ours_config = model.init_args[0]
        assert llm_config.engine_kwargs == ours_config["engine_kwargs"] == {
            "gpu_memory_utilization": 0.5, "max_model_len": 1024, "enforce_eager": True}
        assert llm_config.model_loading_config.model_source == ours_config["model_source"] == "/models/tiny"
        # the same stream batching: Ray's LLMServer batches streamed deltas every 50 ms by default
        assert llm_config.experimental_configs["stream_batching_interval_ms"] == 50.0
        assert ours_config["stream_batching_interval_ms"] == 50.0
        if device == "cuda":
            assert model.ray_actor_options["num_gpus"] == 1
        else:  # both engines on one CPU bundle each: Ray infers vLLM's CPU backend from it
            assert "num_gpus" not in model.ray_actor_options and model.ray_actor_options["num_cpus"] == 1
            assert llm_config.placement_group_config == {"bundle_per_worker": {"CPU": 1}}


def test_bench_vllm_sse_parsing_and_comparison():
    bench = import_benchmark("bench_vllm")
    buffer = bytearray(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\ndata: {"x"')
    assert bench.parse_events(buffer) == [{"choices": [{"delta": {"content": "a"}}]}, "[DONE]"]
    assert buffer == bytearray(b'data: {"x"')  # an incomplete event waits for the rest

    def cell(tps, ttft):
        return {"output_tokens_per_s": tps, "ttft_ms": {"p50": ttft}}

    results = {"ours": {"1": cell(99.0, 10.0), "8": cell(90.0, 10.0)},
               "ray": {"1": cell(100.0, 10.0), "8": cell(100.0, 12.0)}}
    comparison = bench.compare(results, [1, 8])
    assert comparison["1"] == {"tokens_per_s_ratio": 0.99, "ttft_p50_ratio_ray_over_ours": 1.0, "within_target": True}
    assert comparison["8"]["tokens_per_s_ratio"] == 0.9 and comparison["8"]["within_target"] is False
    assert bench.compare({"ours": results["ours"]}, [1, 8]) is None
