"""values.schema.json is generated, current, and enforced by Helm itself."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from rayllm_schemas.schema_gen import default_schema_path, render_values_schema
from rayllm_schemas.values import ChartValues

from ..conftest import CHART, VALUES_DIR, VALUES_FILES, helm_template, write_values


def test_checked_in_schema_is_current():
    assert default_schema_path().read_text() == render_values_schema(), (
        "charts/ray-llm/values.schema.json is stale; run `ray-llm schema`"
    )


@pytest.mark.parametrize("values", VALUES_FILES + [CHART / "values.yaml"], ids=lambda p: p.name)
def test_values_files_validate_with_the_models(values):
    ChartValues.model_validate(yaml.safe_load(values.read_text()) or {})


def _merged(path):
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    over = yaml.safe_load(path.read_text())

    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    return merge(base, over)


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_schema_means_the_same_under_draft07_and_2020_12(values):
    """Helm 3.17 runs a draft-07 engine; newer Helm 2020-12. Both must agree, good and bad."""
    schema = json.loads(default_schema_path().read_text())
    good = _merged(values)
    bad_type = json.loads(json.dumps(good))
    next(iter(bad_type["tiers"].values()))["gpusPerWorker"] = "two"
    bad_key = json.loads(json.dumps(good))
    next(iter(bad_key["models"].values()))["engine_kwarg"] = {}
    for doc, ok in ((good, True), (bad_type, False), (bad_key, False)):
        for cls in (jsonschema.Draft7Validator, jsonschema.Draft202012Validator):
            errors = list(cls(schema).iter_errors(doc))
            assert (not errors) == ok, (cls.__name__, [e.message for e in errors][:3])


@pytest.mark.parametrize(
    "sets, path_fragment",
    [
        (["tiers.small.gpusPerWorker=two"], "/tiers/small/gpusPerWorker"),
        (["tiers.small.minReplicas=-1"], "/tiers/small/minReplicas"),
        (["models.qwen-0-5b.gpuShare=3"], "/models/qwen-0-5b/gpuShare"),
        (["tiers.small.acceleratorTyp=T4"], "/tiers/small"),
        (["models.qwen-0-5b.engine_kwarg.dtype=half"], "/models/qwen-0-5b"),
        (["serve.proxyLocation=Everywhere"], "/serve/proxyLocation"),
    ],
)
def test_helm_rejects_bad_values_through_the_schema(helm_paths, sets, path_fragment):
    for label in ("3.17", "3.18", "4"):
        proc = helm_template(helm_paths[label], [VALUES_DIR / "dev.yaml"], sets=sets, check=False)
        assert proc.returncode != 0, (label, proc.stdout[:300])
        stderr = proc.stderr
        # Helm 3.17 writes "tiers.small.gpusPerWorker", newer Helm "/tiers/small/gpusPerWorker".
        dotted = path_fragment.strip("/").replace("/", ".")
        assert "schema" in stderr and (path_fragment in stderr or dotted in stderr), (label, stderr)


def test_chart_readme_values_table_is_current():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "rayllm_cli.main", "docs", "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
