"""`ray-llm validate` and `helm template` give the same verdict.

The chart states some rules twice: in `ray-llm.validateValues` (so Flux and
Argo CD users, who never run our CLI, get them) and in the CLI's rules (which
add file and line). This guards the two copies against drift: every values
file and scenario passes both, and every broken variant fails both. The CLI
may be stricter than the template (rules a template can't state well, e.g.
weights vs GPU memory), never laxer.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import base, cli, write

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ray-llm"
GOOD_FILES = sorted((REPO / "values").glob("*.yaml")) + sorted((CHART / "ci").glob("*-values.yaml"))


def _helm_ok(helm: Path, values: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), "template", "x", str(CHART), "-f", str(values)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("values", GOOD_FILES, ids=lambda p: p.name)
def test_good_values_pass_both(helm4, values):
    code, out, err = cli("validate", "-f", str(values))
    proc = _helm_ok(helm4, values)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert code == 0, out + err


def _set(doc: dict, dotted: str, value) -> dict:
    node = doc
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return doc


# (id, mutation of tests/cli/helpers.BASE, a fragment both messages must carry)
BROKEN = [
    ("tier-missing", lambda v: _set(v, "models.qwen.tier", "nowhere"), "models.qwen.tier"),
    ("tp-over-tier", lambda v: _set(v, "models.qwen.engine_kwargs.tensor_parallel_size", 2), "models.qwen"),
    ("accelerator-mismatch", lambda v: _set(v, "models.qwen.accelerator_type", "A100"), "models.qwen.accelerator_type"),
    ("app-missing", lambda v: _set(v, "models.qwen.app", "nope"), "models.qwen.app"),
    ("inline-hf-token-env", lambda v: _set(v, "models.qwen.runtime_env", {"env_vars": {"HF_TOKEN": "abc123def456"}}),
     "HF_TOKEN"),
    ("inline-secret-tier-env", lambda v: _set(v, "tiers.small.env", [{"name": "API_KEY", "value": "abc123def456"}]),
     "tiers.small.env"),
    ("inline-secret-head-env", lambda v: _set(v, "head.env", [{"name": "DB_PASSWORD", "value": "hunter2hunter2"}]),
     "head.env"),
    ("image-ray-mismatch", lambda v: _set(_set(v, "rayVersion", "2.59.0"), "image.tag", "2.60.0-py311-cu128"),
     "image.tag"),
    # Below Ray 2.59 the pods' LLMConfig refuses the model files the chart renders.
    ("ray-too-old", lambda v: _set(_set(v, "rayVersion", "2.49.1"), "image.tag", "2.49.1-py311-cu128"), "rayVersion"),
    ("jwt-in-args", lambda v: _set(v, "models.qwen.engine_kwargs.hf_overrides",
                                   {"note": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop"}),
     "JSON Web Token"),
    ("asia-key", lambda v: _set(v, "head.env", [{"name": "X", "value": "ASIAABCDEFGHIJKLMNOP"}]), "AWS access key"),
    ("secret-key-in-engine-kwargs", lambda v: _set(v, "models.qwen.engine_kwargs.hf_token", "abc123def456"),
     "hf_token"),
    ("removed-key", lambda v: _set(v, "rayService.serviceUnhealthySecondThreshold", 900),
     "serviceUnhealthySecondThreshold"),
    ("unknown-key", lambda v: _set(v, "tiers.small.gpuCount", 2), "gpuCount"),
    ("wrong-type", lambda v: _set(v, "tiers.small.gpusPerWorker", "two"), "gpusPerWorker"),
    # KubeRay's replica counts are int32: the API server would reject a larger one.
    ("int32-overflow", lambda v: _set(v, "tiers.small.maxReplicas", 3_000_000_000), "maxReplicas"),
    # Ray's autoscaler cannot size a group without CPU and fails at start for the whole cluster.
    ("tier-without-cpu", lambda v: _set(v, "tiers.small.resources", {"limits": {"memory": "8Gi"}}), "tiers.small.resources"),
    # KubeRay refuses per-group idle timeouts unless the autoscaler is v2.
    ("idle-timeout-on-v1", lambda v: _set(_set(v, "rayService.autoscalerOptions.version", "v1"),
                                          "tiers.small.idleTimeoutSeconds", 30), "tiers.small.idleTimeoutSeconds"),
    ("llm-app-without-route-or-gateway", lambda v: _set(v, "llmApps.chat", {}), "llmApps.chat"),
    ("llm-app-behind-a-missing-gateway", lambda v: _set(v, "llmApps.chat", {"gateway": "nope"}), "llmApps.chat"),
]


# Names that look secret-ish but are not secrets: both must accept them.
HARMLESS = [
    ("tokenizers-parallelism", lambda v: _set(v, "tiers.small.env", [{"name": "TOKENIZERS_PARALLELISM", "value": "false"}])),
    ("token-path", lambda v: _set(v, "models.qwen.runtime_env", {"env_vars": {"HF_TOKEN_PATH": "/var/run/hf/token"}})),
    ("empty-token-env", lambda v: _set(v, "head.env", [{"name": "HF_TOKEN", "value": ""}])),
    ("tokenizer-mode", lambda v: _set(v, "models.qwen.engine_kwargs.tokenizer_mode", "auto")),
    ("max-tokens-key", lambda v: _set(v, "models.qwen.engine_kwargs.max_num_batched_tokens", 8192)),
]


@pytest.mark.parametrize("case", HARMLESS, ids=[c[0] for c in HARMLESS])
def test_harmless_lookalikes_pass_both(helm4, tmp_path, case):
    _name, mutate = case
    values = write(tmp_path, mutate(copy.deepcopy(base())))
    proc = _helm_ok(helm4, values)
    code, out, err = cli("validate", "-f", str(values))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert code == 0, out + err


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_values_fail_both(helm4, tmp_path, case):
    _name, mutate, fragment = case
    values = write(tmp_path, mutate(copy.deepcopy(base())))
    assert _helm_ok(helm4, write(tmp_path, base(), "good.yaml")).returncode == 0, "the base must be valid"
    proc = _helm_ok(helm4, values)
    code, out, err = cli("validate", "-f", str(values))
    assert proc.returncode != 0, f"helm accepted {_name}"
    assert code == 1, f"ray-llm validate accepted {_name}: {out}{err}"
    assert fragment in proc.stderr, proc.stderr[-1500:]
    assert fragment in out + err
    # Neither echoes an inline secret.
    for secret in ("abc123def456", "hunter2hunter2"):
        assert secret not in proc.stderr and secret not in out + err


def test_release_names_kuberay_refuses_fail_both(helm4, tmp_path):
    values = write(tmp_path, base())
    proc = subprocess.run([str(helm4), "template", "1llm", str(CHART), "-f", str(values)],
                          capture_output=True, text=True, timeout=120)
    code, out, err = cli("validate", "-f", str(values), "--release", "1llm")
    assert proc.returncode != 0 and "DNS-1035" in proc.stderr
    assert code == 1 and "DNS-1035" in out + err
    assert cli("validate", "-f", str(values), "--release", "llm")[0] == 0


def test_the_template_states_exactly_the_rules_marked_for_it():
    """One define per rule id the registry marks `in_template`, and no other (the id list the
    template ranges over is generated from the registry)."""
    import re

    from rayllm_cli.rules import RULES

    text = (CHART / "templates" / "_validate.tpl").read_text()
    defined = set(re.findall(r'define "ray-llm\.validate\.(RL\d{3})"', text))
    assert defined == {r.id for r in RULES if r.in_template}
