"""The chart-testing layout, lint configs and every CI scenario hold under Helm 3.17, 3.18 and 4."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ..conftest import CHART, CI_VALUES_FILES, REPO, VALUES_FILES, docs_of, helm_template, rayservice_of, run_helm
from .helpers import PROMETHEUS_KINDS, builtin_errors, crd_errors, prometheus_errors

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WORKFLOW = REPO / ".github" / "workflows" / "ci.yaml"
EXPECTED_SCENARIOS = {
    "minimal", "multi-gpu", "fractional-gpu", "monitoring", "scale-down", "ingress", "image-runtime", "custom-only",
}


def test_ct_config():
    ct = yaml.safe_load((REPO / "ci" / "ct.yaml").read_text())
    assert ct["chart-dirs"] == ["charts"]
    assert ct["target-branch"] == "main"
    assert ct["validate-maintainers"] is False
    assert ct["lint-conf"] == "ci/lintconf.yaml"
    assert ct["chart-yaml-schema"] == "ci/chart_schema.yaml"
    assert (REPO / ct["lint-conf"]).is_file() and (REPO / ct["chart-yaml-schema"]).is_file()


def test_scenarios_exist_and_say_what_they_test():
    names = {p.name[: -len("-values.yaml")] for p in CI_VALUES_FILES}
    assert EXPECTED_SCENARIOS <= names
    for path in CI_VALUES_FILES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, path.name


def test_yamllint_passes_with_the_chart_lint_config():
    files = [CHART / "Chart.yaml", CHART / "values.yaml", *VALUES_FILES, *CI_VALUES_FILES, WORKFLOW,
             *sorted((REPO / "examples").rglob("*.yaml")), *sorted((REPO / "ci").glob("*.yaml"))]
    proc = subprocess.run([sys.executable, "-m", "yamllint", "-f", "parsable", "-s", "-c",
                           str(REPO / "ci" / "lintconf.yaml"), *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamale_validates_chart_yaml(tmp_path):
    import yamale

    schema = yamale.make_schema(str(REPO / "ci" / "chart_schema.yaml"))
    yamale.validate(schema, yamale.make_data(str(CHART / "Chart.yaml")), strict=True)
    # and the schema has teeth
    bad = yaml.safe_load((CHART / "Chart.yaml").read_text())
    bad["apiVersion"] = "v1"
    bad["maintainers"] = [{"email": "x@example.com"}]
    path = tmp_path / "Chart.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(yamale.YamaleError):
        yamale.validate(schema, yamale.make_data(str(path)), strict=True)


def test_workflow_jobs_and_steps():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert True in wf or "on" in wf  # YAML 1.1 reads the "on" key as True
    jobs = wf["jobs"]
    test_uses = [s.get("uses", "") for s in jobs["test"]["steps"]]
    test_runs = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    assert any(u.startswith("actions/checkout@") for u in test_uses)
    assert any(u.startswith("actions/setup-python@") for u in test_uses)
    assert "make test" in test_runs
    steps = jobs["chart"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    for action in ("actions/checkout@", "azure/setup-helm@", "helm/chart-testing-action@", "helm/kind-action@"):
        assert any(u.startswith(action) for u in uses), action
    assert "ct lint --config ci/ct.yaml" in runs
    assert "ct install --config ci/ct.yaml" in runs
    assert "kubeconform -strict" in runs and "schema-location" in runs
    assert "kuberay/kuberay-operator" in runs and '--version "${KUBERAY_CHART_VERSION}"' in runs
    env = wf["env"]
    for key in ("KUBERAY_VERSION", "KUBERAY_CHART_VERSION", "KUBECONFORM_VERSION", "HELM_VERSION"):
        assert env[key] and "latest" not in str(env[key]), key
    # the operator is installed before ct install runs
    names = [s.get("name", "") for s in steps]
    assert names.index("Install the KubeRay operator") < names.index("ct install")


@pytest.mark.parametrize("values", CI_VALUES_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("label", ["3.17", "3.18", "4"])
def test_ci_scenario_lints_and_renders_valid_objects(helm_paths, label, values):
    helm = helm_paths[label]
    proc = run_helm(helm, ["lint", "--strict", str(CHART), "-f", str(values)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = docs_of(helm_template(helm, [values]).stdout)
    assert crd_errors(rayservice_of(docs)) == []
    if label == "4":  # warnings too (e.g. a null the API server would prune), once
        from rayllm_cli.checks_crd import validate_manifest

        assert [str(f) for f in validate_manifest(rayservice_of(docs))] == []
    if label == "4":  # the built-in kinds render the same under every Helm; check them once
        assert builtin_errors(docs) == []
    for obj in docs:
        if obj["kind"] in PROMETHEUS_KINDS:
            assert prometheus_errors(obj) == []
    if values.name == "monitoring-values.yaml":
        assert {d["kind"] for d in docs} >= {"ServiceMonitor", "PodMonitor", "ConfigMap"}
