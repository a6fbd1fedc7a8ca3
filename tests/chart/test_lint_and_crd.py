"""The chart lints strictly under Helm 3 and 4 and every RayService fits KubeRay's CRD."""

from __future__ import annotations

import pytest

from ..conftest import CHART, VALUES_FILES, docs_of, helm_template, rayservice_of, run_helm

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("label", ["3.17", "3.18", "4"])
def test_helm_lint_strict(helm_paths, label, values):
    proc = run_helm(helm_paths[label], ["lint", "--strict", str(CHART), "-f", str(values)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_helm_lint_strict_defaults(helm):
    proc = run_helm(helm, ["lint", "--strict", str(CHART)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_rayservice_matches_kuberay_crd_strictly(helm, values):
    from rayllm_cli.checks_crd import validate_manifest

    docs = docs_of(helm_template(helm, [values]).stdout)
    findings = validate_manifest(rayservice_of(docs))  # warnings too: e.g. a null the API server would prune
    assert list(findings) == [], "\n".join(map(str, findings))


def test_crd_check_rejects_a_typo_the_api_server_would_prune(helm4, tmp_path):
    """A misspelled field inside the RayService must fail here, not vanish in the cluster."""
    from rayllm_cli.checks_crd import validate_manifest

    docs = docs_of(helm_template(helm4, [VALUES_FILES[0]]).stdout)
    rs = rayservice_of(docs)
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 1
    findings = [f for f in validate_manifest(rs) if f.is_error]
    assert any("workerGroupSpecs[0]" in f.path or "minReplica" in f.message for f in findings), findings
