"""The pre-pull Job's program (python -m rayllm_runtime.model_cache): what it downloads, where, and
what it skips on a second run; its exit codes. The Hub is the one thing not here (no network): a
downloader with huggingface_hub's snapshot_download signature writes the files instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rayllm_runtime.model_cache import COMPLETE_MARKER, fill_cache

REPO = Path(__file__).resolve().parents[2]


def fake_hub(calls):
    def snapshot_download(*, repo_id, local_dir, ignore_patterns=None):
        calls.append((repo_id, ignore_patterns))
        (Path(local_dir) / "config.json").write_text(json.dumps({"repo": repo_id}))
        return local_dir
    return snapshot_download


def test_downloads_each_repo_to_the_path_the_chart_renders_then_skips_it(tmp_path):
    calls = []
    done = fill_cache(tmp_path, ["Qwen/Qwen2.5-0.5B-Instruct", "org/other"], ["original/*"], download=fake_hub(calls),
                      say=lambda _line: None)
    assert done == ["Qwen/Qwen2.5-0.5B-Instruct", "org/other"]
    assert (tmp_path / "Qwen/Qwen2.5-0.5B-Instruct/config.json").is_file()
    assert (tmp_path / "Qwen/Qwen2.5-0.5B-Instruct" / COMPLETE_MARKER).is_file()
    assert calls == [("Qwen/Qwen2.5-0.5B-Instruct", ["original/*"]), ("org/other", ["original/*"])]
    again = []
    assert fill_cache(tmp_path, ["Qwen/Qwen2.5-0.5B-Instruct"], download=fake_hub(again), say=lambda _l: None) == []
    assert again == []


def test_an_interrupted_download_is_completed_not_trusted(tmp_path):
    (tmp_path / "org/model").mkdir(parents=True)
    (tmp_path / "org/model/partial.safetensors").write_text("half")
    calls = []
    assert fill_cache(tmp_path, ["org/model"], download=fake_hub(calls), say=lambda _l: None) == ["org/model"]


def _run(env):
    return subprocess.run([sys.executable, "-m", "rayllm_runtime.model_cache"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_bad_settings_exit_2_with_one_line(tmp_path):
    for env in ({"RAYLLM_CACHE_ROOT": "relative"}, {"RAYLLM_CACHE_ROOT": str(tmp_path / "missing")},
                {"RAYLLM_CACHE_ROOT": str(tmp_path), "RAYLLM_CACHE_MODELS": "not json"},
                {"RAYLLM_CACHE_ROOT": str(tmp_path), "RAYLLM_CACHE_MODELS": '["../escape"]'}):
        proc = _run(env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (env, proc.stderr)
        assert proc.stderr.startswith("model cache: "), proc.stderr


def test_a_failed_download_exits_1_without_traceback(tmp_path):
    # offline: huggingface_hub cannot fetch the repo; the Job's pod log gets one line and the Job retries
    proc = _run({"RAYLLM_CACHE_ROOT": str(tmp_path), "RAYLLM_CACHE_MODELS": '["org/not-cached-here"]',
                 "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1 and "download failed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "org/not-cached-here" / COMPLETE_MARKER).exists()
