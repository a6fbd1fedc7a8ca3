"""Helpers for the CLI tests: a small valid values dict and in-process runs."""

from __future__ import annotations

import copy
import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import List, Tuple

import yaml

BASE = {
    "tiers": {
        "small": {"acceleratorType": "T4", "gpusPerWorker": 1, "minReplicas": 0, "maxReplicas": 2},
        "large": {"acceleratorType": "L4", "gpusPerWorker": 2, "minReplicas": 0, "maxReplicas": 2},
    },
    "llmApps": {"chat": {"routePrefix": "/chat"}, "big": {"routePrefix": "/big"}},
    "models": {
        "qwen": {
            "tier": "small", "family": "qwen", "app": "chat",
            "model_loading_config": {"model_id": "qwen-0.5b", "model_source": "Qwen/Qwen2.5-0.5B-Instruct"},
            "engine_kwargs": {"dtype": "float16", "max_model_len": 4096},
            "deployment_config": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 2,
                                                         "target_ongoing_requests": 8},
                                  "max_ongoing_requests": 16},
        },
        "falcon": {
            "tier": "large", "family": "falcon", "app": "big",
            "model_loading_config": {"model_id": "falcon3-10b", "model_source": "tiiuae/Falcon3-10B-Instruct"},
            "engine_kwargs": {"dtype": "bfloat16", "tensor_parallel_size": 2, "max_model_len": 8192},
            "deployment_config": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 2}},
        },
    },
}


def base() -> dict:
    return copy.deepcopy(BASE)


def write(tmp_path: Path, data, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str) -> Tuple[int, str, str]:
    """Run the CLI in-process like the console script does; return (exit code, stdout, stderr)."""
    from rayllm_cli.main import run

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


def findings(tmp_path: Path, data: dict, *extra: str) -> List[dict]:
    import json

    code, out, err = cli("validate", "-f", str(write(tmp_path, data)), "-o", "json", *extra)
    assert "Traceback" not in err, err
    doc = json.loads(out)
    assert doc["valid"] == (code == 0)
    return doc["findings"]


def rule_hits(found: List[dict], rule: str, severity: str | None = None) -> List[dict]:
    return [f for f in found if f["rule"] == rule and (severity is None or f["severity"] == severity)]
