"""`ray-llm run -f values/dev.yaml`: render, deploy on a local Ray, answer, shut down.

The command runs as users run it (the console script in a subprocess); the
test talks to it with the real openai client and stops it with Ctrl-C.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
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


def test_run_dev_values_serves_a_chat_completion_and_stops_on_ctrl_c(tiny_model_path, tmp_path):
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    # The dev values' model id, served from the locally built tiny weights
    # (no downloads here); everything else comes from values/dev.yaml.
    cmd = CLI + ["run", "-f", str(REPO / "values/dev.yaml"), "--port", str(port), "--num-cpus", "2", "--cpu",
                 "--model", f"qwen2.5-0.5b-instruct={tiny_model_path}", "--workdir", str(tmp_path / "pod")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: "queue.Queue[str]" = queue.Queue()
    output: list = []
    threading.Thread(target=_reader, args=(proc.stdout, lines, output), daemon=True).start()
    try:
        ready = _wait_for(lines, "ray-llm run: ready: ", time.monotonic() + 300)
        base_url = ready.split("ready: ", 1)[1].strip()
        assert base_url == f"http://127.0.0.1:{port}"

        # The model file is where the pod would see it, content-addressed.
        laid_out = list((tmp_path / "pod/home/ray/rayllm/models/qwen").glob("qwen-0-5b.*.yaml"))
        assert len(laid_out) == 1

        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["qwen2.5-0.5b-instruct"]
        reply = client.chat.completions.create(
            model="qwen2.5-0.5b-instruct", messages=[{"role": "user", "content": "Hello"}], max_tokens=5,
            temperature=0,
        )
        assert reply.choices[0].message.role == "assistant"
        assert reply.usage.completion_tokens == 5 and reply.usage.prompt_tokens > 0

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(output)
    assert "no CUDA GPU" in text and "cpu engine" in text
    assert "ray-llm run: shut down" in text
    assert "Traceback" not in text
    assert not _port_open(port), "the Serve proxy still listens after shutdown"
    assert laid_out[0].exists()  # --workdir is the user's: kept after shutdown


def test_run_once_offline_builds_a_tiny_model(tmp_path):
    """The README's run command on a machine with no network and no cache."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(CLI + ["run", "-f", "values/dev.yaml", "--port", str(port), "--num-cpus", "2", "--cpu",
                                 "--once"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "offline and not cached; using a tiny random model" in out
    assert "chat completion from qwen2.5-0.5b-instruct via chat:" in out
    assert (tmp_path / "cache/tiny-model/config.json").is_file()
    assert "Traceback" not in out + proc.stderr


def test_run_once_probes_a_gateway_with_a_colocated_model(tmp_path):
    """The custom-only scenario: the chart's gateway app with its model colocated answers --once."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(CLI + ["run", "-f", "charts/ray-llm/ci/custom-only-values.yaml", "--port", str(port),
                                 "--num-cpus", "2", "--cpu", "--once"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chat completion from echo via gateway: 'This is a fake response from ray-llm.'" in proc.stdout


def test_run_reads_values_from_stdin_once(tmp_path):
    """`-f -`: validate and helm both get stdin's values (helm used to render an empty stdin)."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), RAY_USAGE_STATS_ENABLED="0")
    values = (REPO / "charts/ray-llm/ci/custom-only-values.yaml").read_text()
    proc = subprocess.run(CLI + ["run", "-f", "-", "--port", str(port), "--num-cpus", "2", "--cpu", "--once"],
                          input=values, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chat completion from echo via gateway:" in proc.stdout


def test_gateway_models_for_the_smoke_request():
    from rayllm_cli.serve_local import gateway_models

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


def test_run_that_cannot_schedule_fails_clearly_instead_of_hanging(tmp_path):
    """prod on a 1-CPU local Ray: its replicas never fit, so the deploy times out with a fix."""
    port = free_port()
    env = dict(os.environ, RAYLLM_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(CLI + ["run", "-f", "values/prod.yaml", "--port", str(port), "--num-cpus", "1", "--cpu",
                                 "--once", "--deploy-timeout", "15"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not RUNNING after 15 s" in proc.stderr and "raise --num-cpus" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not _port_open(port), "the failed run left the Serve proxy listening"
