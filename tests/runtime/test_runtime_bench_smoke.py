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

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_ingress.py"


def test_bench_ingress_smoke(tmp_path):
    pytest.importorskip("aiohttp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--concurrency", "1,2", "--requests", "4", "--per-client-cap", "2",
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
