"""Values merge exactly as Helm merges them (checked against real helm 3.18 and 4)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ..conftest import CHART, docs_of, helm_template, model_files_of, rayservice_of, run_helm
from .helpers import base, write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FILE_A = {
    "tiers": {"small": {"acceleratorType": "T4", "maxReplicas": 4,
                        "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
                        "nodeSelector": {"pool": "t4", "zone": "z1"}}},
    "head": {"objectStoreMemory": 100000000, "nodeSelector": {"pool": "cpu"}},
    "serve": {"requestTimeoutS": 30},
    "list_of_maps": [{"a": 1}, {"b": 2}],
}
FILE_B = {
    "tiers": {"small": {"tolerations": [{"key": "c", "operator": "Exists"}], "nodeSelector": {"zone": "z2"}}},
    "head": {"objectStoreMemory": None},
    "image": {"pullPolicy": None},
    "serve": {"requestTimeoutS": 60},
    "userOnly": {"gone": None, "kept": 1},
}
SETS = ["tiers.small.maxReplicas=7,serve.port=8080", "list_of_maps[1].c=true", "extra={x,y,007}",
        "tiers.small.nodeSelector.pool=null", "esc\\.aped=1.5", "serve.service.annotations.a=b"]
SET_STRINGS = ["tiers.small.replicas=3x", "str=true"]


def _values_chart(tmp_path: Path) -> Path:
    """A chart with the real values.yaml whose only template prints Helm's merged .Values."""
    chart = tmp_path / "dump"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: ray-llm\nversion: 0.1.0\n")
    shutil.copyfile(CHART / "values.yaml", chart / "values.yaml")
    (chart / "templates" / "values.yaml").write_text("{{ toYaml .Values }}\n")
    return chart


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    return float(v)


def _drop_nulls(v):
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


def test_merge_equals_helm_values(helm, tmp_path):
    from rayllm_cli.merge import merge_values

    chart = _values_chart(tmp_path)
    a, b = write(tmp_path, FILE_A, "a.yaml"), write(tmp_path, FILE_B, "b.yaml")
    args = ["template", "x", str(chart), "-f", str(a), "-f", str(b)]
    for s in SETS:
        args += ["--set", s]
    for s in SET_STRINGS:
        args += ["--set-string", s]
    helm_values = yaml.safe_load(run_helm(helm, args).stdout)
    ours = merge_values([a, b], SETS, SET_STRINGS, chart=chart)
    if helm.parent.name == "helm-3.18":
        assert _norm(ours.values) == _norm(helm_values)
    else:
        # Helm 4 keeps `key: null` when the chart's default is null too (3.18 deletes it);
        # templates see the same nil either way, so compare without nulls.
        assert _norm(_drop_nulls(ours.values)) == _norm(_drop_nulls(helm_values))
        assert "pullPolicy" not in helm_values["image"]  # a null over a non-null default still deletes
    # the semantics, spelled out
    v = ours.values
    assert v["tiers"]["small"]["tolerations"] == [{"key": "c", "operator": "Exists"}]  # lists replace
    # maps merge; a null with no chart default below it stays (Helm only deletes defaults)
    assert v["tiers"]["small"]["nodeSelector"] == {"pool": None, "zone": "z2"}
    assert v["userOnly"] == {"gone": None, "kept": 1}
    assert "objectStoreMemory" not in v["head"] and v["head"]["nodeSelector"] == {"pool": "cpu"}  # null deletes
    assert "pullPolicy" not in v["image"] and v["image"]["repository"]  # maps merge with defaults
    assert v["tiers"]["small"]["maxReplicas"] == 7 and v["serve"]["requestTimeoutS"] == 60  # --set last
    assert v["extra"] == ["x", "y", "007"] and v["str"] == "true" and v["esc.aped"] == "1.5"
    assert v["list_of_maps"][1] == {"b": 2, "c": True}


def test_origins_point_at_file_and_line(tmp_path):
    from rayllm_cli.merge import merge_values

    a, b = write(tmp_path, FILE_A, "a.yaml"), write(tmp_path, FILE_B, "b.yaml")
    merged = merge_values([a, b], ["tiers.small.maxReplicas=7"])
    assert merged.origin(("serve", "requestTimeoutS")).startswith(f"{b}:")
    assert merged.origin(("tiers", "small", "maxReplicas")) == "--set tiers.small.maxReplicas=7"
    assert merged.origin(("tiers", "small", "tolerations", 0, "key")).startswith(f"{b}:")
    assert merged.origin(("tiers", "small", "acceleratorType")) == f"{a}:3"
    chart_values = (Path(__file__).resolve().parents[2] / "charts/ray-llm/values.yaml").read_text().splitlines()
    tag_line = next(i for i, line in enumerate(chart_values, 1) if line.startswith("  tag:"))
    assert merged.origin(("image", "tag")).endswith(f"values.yaml:{tag_line}")  # the chart default's own line


def test_rendered_chart_reflects_merged_values(helm, tmp_path):
    """The real chart renders what our merge computed: list replacement, map merge, null, --set precedence."""
    from rayllm_cli.merge import merge_values

    one = base()
    one["tiers"]["small"]["tolerations"] = [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]
    one["tiers"]["small"]["nodeSelector"] = {"pool": "t4"}
    one["head"] = {"objectStoreMemory": 100000000}
    two = {"tiers": {"small": {"tolerations": [{"key": "c", "operator": "Exists"}], "nodeSelector": {"zone": "z"}}},
           "head": {"objectStoreMemory": None},
           "models": {"qwen": {"engine_kwargs": {"max_model_len": 2048}}}}
    sets = ["tiers.small.maxReplicas=3", "models.qwen.engine_kwargs.max_num_seqs=7"]
    a, b = write(tmp_path, one, "one.yaml"), write(tmp_path, two, "two.yaml")
    merged = merge_values([a, b], sets).values
    docs = docs_of(helm_template(helm, [a, b], sets).stdout)
    rs = rayservice_of(docs)
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    small = groups["small"]
    tolerations = small["template"]["spec"].get("tolerations", [])
    assert [t["key"] for t in tolerations if t["key"] in "abc"] == [t["key"] for t in merged["tiers"]["small"]["tolerations"]] == ["c"]
    assert small["template"]["spec"]["nodeSelector"] == {**merged["tiers"]["small"]["nodeSelector"]} == {"pool": "t4", "zone": "z"}
    assert small["maxReplicas"] == merged["tiers"]["small"]["maxReplicas"] == 3
    head_params = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert "object-store-memory" not in head_params and "objectStoreMemory" not in merged["head"]
    files = model_files_of(docs)
    qwen = next(yaml.safe_load(t) for k, t in files.items() if "qwen" in k)
    assert qwen["engine_kwargs"]["max_model_len"] == merged["models"]["qwen"]["engine_kwargs"]["max_model_len"] == 2048
    assert qwen["engine_kwargs"]["max_num_seqs"] == 7


@pytest.mark.parametrize("expr", ["a", "a[x]=1", "a[0", "=1", "a={x,y"])
def test_bad_set_is_a_usage_error(expr):
    from .helpers import cli

    code, out, err = cli("validate", "--set", expr)
    assert code == 2 and "Traceback" not in err and "--set" in err
