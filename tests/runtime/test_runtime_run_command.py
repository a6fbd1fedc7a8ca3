"""`ray-llm run -f values/dev.yaml`: render, deploy on a local Ray, answer, shut down.

The command runs as users run it (the console script in a subprocess); the
test talks to it with the real openai client and stops it with Ctrl-C.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rayllm_runtime.testing import free_port

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "rayllm_cli.main"]


def _reader(stream, lines: "queue.Queue[str]", keep: list) -> None:
    for line in iter(stream.readline, ""):
        keep.append(line)
        lines.put(line)
    lines.put("")


def _wait_for(lines: "queue.Queue[str]", marker: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line == "":
            raise AssertionError("ray-llm run exited before printing " + repr(marker))
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within the deadline")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_once_offline_builds_a_tiny_model(tmp_path):
    """The README's run command on a machine with no network and no cache."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(CLI + ["run", "-f", "values/dev.yaml", "--port", str(port), "--once"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "offline and not cached; using a tiny random model" in out
    assert "models run on vLLM's CPU build" in out  # Ray's build_openai_app on real vLLM, not a stand-in
    assert "chat completion from qwen2.5-0.5b-instruct via chat:" in out
    assert (tmp_path / "cache/tiny-model/config.json").is_file()
    assert "Traceback" not in out + proc.stderr


def test_run_once_probes_a_gateway_with_a_colocated_model(tmp_path):
    """The custom-only scenario: the chart's gateway app with its model colocated answers --once."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(CLI + ["run", "-f", "charts/ray-llm/ci/custom-only-values.yaml", "--port", str(port),
                                 "--once"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chat completion from echo via gateway: 'This is a fake response from ray-llm.'" in proc.stdout


def test_run_reads_values_from_stdin_once(tmp_path):
    """`-f -`: validate and helm both get stdin's values (helm used to render an empty stdin)."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), RAY_USAGE_STATS_ENABLED="0")
    values = (REPO / "charts/ray-llm/ci/custom-only-values.yaml").read_text()
    proc = subprocess.run(CLI + ["run", "-f", "-", "--port", str(port), "--once"],
                          input=values, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chat completion from echo via gateway:" in proc.stdout


def test_gateway_models_for_the_smoke_request():
    from rayllm_cli.run_command import gateway_models

    config = {"applications": [
        {"name": "gw", "import_path": "rayllm_runtime.apps:build_gateway",
         "args": {"models": [{"model_id": "a", "engine": "fake"},
                             {"model_id": "stt", "engine": "fake", "task": "transcription"}],
                  "upstreams": [{"model_ids": ["elsewhere"], "base_url": "http://x"}]}},
        {"name": "locked", "import_path": "rayllm_runtime.apps:build_gateway",
         "args": {"auth": {"enabled": True, "api_keys_path": "/keys"}, "models": [{"model_id": "b", "engine": "fake"}]}},
        {"name": "chat", "import_path": "ray.serve.llm:build_openai_app", "args": {}},
    ]}
    assert gateway_models(config) == ([("gw", "a")], ["locked"])


def test_run_that_cannot_schedule_fails_within_a_minute_naming_the_deployment(tmp_path):
    """prod on a 1-CPU local Ray: no model replica fits, and the run says which, and why, in under 60 s."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0")
    started = time.monotonic()
    proc = subprocess.run(CLI + ["run", "-f", "values/prod.yaml", "--port", str(port), "--num-cpus", "1", "--once"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    deploy_started = next((line for line in proc.stdout.splitlines() if "local Ray:" in line), None)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert deploy_started and "1 logical CPU(s)" in deploy_started
    assert "unschedulable on the local Ray" in proc.stderr and "LLMServer:" in proc.stderr
    assert "Resources required for each replica" in proc.stderr and "raise --num-cpus" in proc.stderr
    assert time.monotonic() - started < 150  # the 30 s Serve waits before it reports, plus Ray's start
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not _port_open(port), "the failed run left the Serve proxy listening"
