"""Upgrade strategies as KubeRay reads them: the incremental strategy renders KubeRay's
clusterUpgradeOptions, fits its CRD and passes its own option checks; a half-configured one is
refused by Helm (for Flux and Argo CD users) and by `ray-llm validate` alike."""

from __future__ import annotations

import pytest

from ..cli.helpers import cli
from ..conftest import CHART, docs_of, helm_template, rayservice_of, run_helm
from ..kuberay_rules import rayservice_errors

SCENARIO = CHART / "ci" / "incremental-upgrade-values.yaml"


def test_incremental_strategy_renders_kuberays_upgrade_options(helm):
    from rayllm_cli.checks_crd import validate_manifest

    docs = docs_of(helm_template(helm, [SCENARIO]).stdout)
    rs = rayservice_of(docs)
    assert rs["spec"]["upgradeStrategy"] == {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {"gatewayClassName": "istio", "stepSizePercent": 25, "intervalSeconds": 60,
                                  "maxSurgePercent": 25},
    }
    # KubeRay ignores spec.serveService in this mode (a serve Service per cluster behind the Gateway)
    assert "serveService" not in rs["spec"]
    assert rs["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    assert list(validate_manifest(rs)) == []
    assert rayservice_errors(rs) == []


def test_other_strategies_render_no_upgrade_options(helm4):
    for strategy in ("NewCluster", "None"):
        rs = rayservice_of(docs_of(helm_template(helm4, [SCENARIO], [f"rayService.upgradeStrategy={strategy}"]).stdout))
        assert rs["spec"]["upgradeStrategy"] == {"type": strategy}
        assert rs["spec"]["serveService"]["metadata"]["name"]


def test_kuberay_default_surge_is_not_the_charts(helm4):
    """KubeRay's own default maxSurgePercent (100) doubles capacity during an upgrade; the chart's is 25."""
    rs = rayservice_of(docs_of(helm_template(
        helm4, [], ["rayService.upgradeStrategy=NewClusterWithIncrementalUpgrade",
                    "rayService.incrementalUpgrade.gatewayClassName=eg"]).stdout))
    assert rs["spec"]["upgradeStrategy"]["clusterUpgradeOptions"]["maxSurgePercent"] == 25
    assert rayservice_errors(rs) == []


@pytest.mark.parametrize("sets, fragment", [
    (["rayService.incrementalUpgrade.gatewayClassName="], "rayService.incrementalUpgrade.gatewayClassName"),
    (["rayService.enableInTreeAutoscaling=false"], "rayService.enableInTreeAutoscaling"),
    (["rayService.incrementalUpgrade.stepSizePercent=50"], "rayService.incrementalUpgrade.stepSizePercent"),
    (["serve.ingress.enabled=true"], "serve.ingress.enabled"),
], ids=["no-gateway-class", "no-autoscaler", "step-over-surge", "ingress"])
def test_half_configured_incremental_strategy_fails_helm_and_validate(helm4, sets, fragment):
    proc = helm_template(helm4, [SCENARIO], sets, check=False)
    assert proc.returncode != 0 and "[RL018] " + fragment in proc.stderr, proc.stderr[-800:]
    args = ["validate", "-f", str(SCENARIO)]
    for s in sets:
        args += ["--set", s]
    code, out, err = cli(*args)
    assert code == 1 and fragment in out + err and "RL018" in out + err, out + err


def test_notes_send_clients_through_kuberays_gateway(helm4):
    out = run_helm(helm4, ["install", "llm", str(CHART), "-f", str(SCENARIO), "--dry-run=client", "-n", "ai"]).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "get gateway llm-ray-llm-gateway" in notes and "activeServiceStatus.rayClusterName" in notes
    assert "svc/llm-ray-llm-serve-svc" not in notes  # no such Service in this mode


def test_schema_refuses_unknown_strategy_and_out_of_range_options(helm4):
    for bad in ("rayService.upgradeStrategy=Rolling", "rayService.incrementalUpgrade.stepSizePercent=0",
                "rayService.incrementalUpgrade.maxSurgePercent=101", "rayService.incrementalUpgrade.intervalSeconds=0"):
        proc = helm_template(helm4, [SCENARIO], [bad], check=False)
        assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr, bad
