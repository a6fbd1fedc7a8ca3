"""Object-size guards: lint fails on a ConfigMap the API server would reject for its
1 MiB data limit, before anything is applied."""

from __future__ import annotations

import base64
import json

import pytest

from rayllm_cli.checks_builtin import DATA_SIZE_LIMIT, data_size, object_size_findings

from tests.cli.helpers import base, cli, write


def _cm(data=None, binary=None):
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}}
    if data is not None:
        obj["data"] = data
    if binary is not None:
        obj["binaryData"] = binary
    return obj


def _data_errors(obj):
    return [f for f in object_size_findings(obj) if f.severity == "error" and f.path == "data"]


def test_data_size_counts_values_like_the_api_server():
    assert data_size(_cm({"a": "xy", "b": "é"})) == 2 + 2  # UTF-8 bytes of the values; keys are free
    assert data_size(_cm(binary={"b": base64.b64encode(b"\0" * 10).decode()})) == 10  # decoded bytes
    assert data_size(_cm()) == 0
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"k": base64.b64encode(b"abc").decode()}, "stringData": {"s": "de"}}
    assert data_size(secret) == 5
    assert data_size({"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "x"}}) is None


def test_configmap_data_limit_is_an_error_at_one_byte_over():
    assert _data_errors(_cm({"k": "x" * DATA_SIZE_LIMIT})) == []
    (err,) = _data_errors(_cm({"k": "x" * (DATA_SIZE_LIMIT - 4), "l": "yyyyy"}))
    assert "1,048,576" in err.message and err.rule == "size" and err.obj == "ConfigMap/m"
    # below etcd's 1.5 MiB request limit: only the data limit catches it
    big = _cm({"k": "x" * (DATA_SIZE_LIMIT + 1)})
    assert len(json.dumps(big)) < 1_572_864
    assert [f.severity for f in object_size_findings(big) if f.severity == "error"] == ["error"]


def _padded_values():
    """Two models of one family whose files together pass 1 MiB (a long env var in
    runtime_env stands in for many models, e.g. a big chat template)."""
    v = base()
    v["models"]["falcon"]["family"] = "qwen"
    for name in ("qwen", "falcon"):
        v["models"][name]["runtime_env"] = {"env_vars": {"PADDING": "p" * (DATA_SIZE_LIMIT // 2 + 1000)}}
    return v


def test_lint_fails_before_the_api_server_would(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLLM_RAY_SCHEMAS", "off")  # Ray's models are not what this is about (and slow)
    path = write(tmp_path, _padded_values())
    assert cli("validate", "-f", str(path))[0] == 0
    code, out, err = cli("lint", "-f", str(path), "-o", "json")
    assert "Traceback" not in err, err
    doc = json.loads(out)
    assert code == 1 and not doc["valid"]
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["rule"] == "size" and "-models-qwen" in errors[0]["obj"] and "1 MiB" in errors[0]["message"]
    assert any("RAYLLM_RAY_SCHEMAS" in n for n in doc["notes"])


@pytest.mark.parametrize("value", ["off", "0"])
def test_ray_schemas_switch_is_reported(tmp_path, monkeypatch, value):
    monkeypatch.setenv("RAYLLM_RAY_SCHEMAS", value)
    code, out, _ = cli("lint", "-f", str(write(tmp_path, base())), "-o", "json")
    doc = json.loads(out)
    assert code == 0 and any("not checked" in n for n in doc["notes"]), doc
