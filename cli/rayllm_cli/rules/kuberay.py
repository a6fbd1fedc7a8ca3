"""What KubeRay refuses before it does anything (tests/kuberay_rules.py cites its source).

RL016: per-group idleTimeoutSeconds needs autoscaler v2 (validation.go validateWorkerGroupIdleTimeout).
RL017: the RayService name (from the release name) is a DNS-1035 label (validation.go ValidateRayServiceMetadata).
RL018: NewClusterWithIncrementalUpgrade has its gateway class, the autoscaler and step <= surge
       (validation.go ValidateClusterUpgradeOptions), and no Ingress to a serve Service KubeRay drops.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ERROR, Finding
from .context import Context
from .registry import rule

CHART_NAME = "ray-llm"
#: ray-llm.names.fullname cuts the base name to 40 characters (the suffix budget is in _helpers.tpl).
FULLNAME_MAX = 40
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def fullname(values: dict, release: str) -> str:
    """The RayService's name as ray-llm.names.fullname renders it."""
    override = values.get("fullnameOverride")
    if isinstance(override, str) and override:
        return override[:FULLNAME_MAX].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    base = release if str(name) in release else f"{release}-{name}"
    return base[:FULLNAME_MAX].rstrip("-")


@rule("RL016", "per-group idleTimeoutSeconds runs on autoscaler v2", in_template=True)
def rule_idle_timeout_needs_v2(ctx: Context) -> Iterator[Finding]:
    options = ctx.section("rayService").get("autoscalerOptions")
    version = options.get("version", "v2") if isinstance(options, dict) else "v2"
    if version == "v2":
        return
    groups: List[Tuple[Tuple[Any, ...], Any]] = [
        (("tiers", name, "idleTimeoutSeconds"), t.get("idleTimeoutSeconds")) for name, t in ctx.enabled_tiers().items()
    ]
    system = ctx.system_group()
    if system is not None:
        groups.append((("systemGroup", "idleTimeoutSeconds"), system.get("idleTimeoutSeconds")))
    for path, value in groups:
        if value is not None:
            yield ctx.finding(
                "RL016",
                ERROR,
                path,
                f"a per-group idle timeout with autoscaler {version}: KubeRay refuses the whole RayService "
                "('idleTimeoutSeconds is set, but autoscaler v2 is not enabled')",
                value,
                "rayService.autoscalerOptions.version v2 (the chart's default)",
                "set rayService.autoscalerOptions.version: v2, or remove the per-group idleTimeoutSeconds",
            )


@rule("RL017", "the RayService name KubeRay derives from the release is valid", in_template=True)
def rule_release_name(ctx: Context) -> Iterator[Finding]:
    release: Optional[str] = ctx.release
    if release is None and not ctx.values.get("fullnameOverride"):
        return  # the release name is only known at install time (validate --release, lint --release)
    name = fullname(ctx.values, release or "")
    if not DNS1035_LABEL.match(name):
        message = (
            f"the RayService would be named {name!r}; KubeRay refuses a RayService name that is not a DNS-1035 label"
        )
        expected = "lowercase letters, digits and '-', starting with a letter"
        fix = "install under a release name that starts with a letter, or set fullnameOverride"
        if ctx.values.get("fullnameOverride"):
            yield ctx.finding("RL017", ERROR, ("fullnameOverride",), message, name, expected, fix)
        else:
            yield Finding(
                rule="RL017",
                severity=ERROR,
                path="",
                message=message,
                value=name,
                expected=expected,
                fix=fix,
                origin=f"--release {release}",
            )


INCREMENTAL = "NewClusterWithIncrementalUpgrade"


@rule("RL018", "the incremental upgrade strategy is fully configured", in_template=True)
def rule_incremental_upgrade(ctx: Context) -> Iterator[Finding]:
    """KubeRay's ValidateClusterUpgradeOptions (it refuses the whole RayService otherwise), and the
    chart's Ingress, which points at a serve Service KubeRay does not keep in this mode."""
    rs = ctx.section("rayService")
    if rs.get("upgradeStrategy") != INCREMENTAL:
        return
    raw = rs.get("incrementalUpgrade")
    opts: Dict[str, Any] = raw if isinstance(raw, dict) else {}
    base = ("rayService", "incrementalUpgrade")
    if not opts.get("gatewayClassName"):
        yield ctx.finding(
            "RL018",
            ERROR,
            base + ("gatewayClassName",),
            f"no gateway class for upgradeStrategy {INCREMENTAL}: KubeRay refuses the RayService "
            "('gatewayClassName is required')",
            opts.get("gatewayClassName", ""),
            "the name of a GatewayClass in the cluster (Gateway API CRDs and a controller installed)",
            "set rayService.incrementalUpgrade.gatewayClassName (kubectl get gatewayclass), "
            "or use upgradeStrategy: NewCluster",
        )
    if rs.get("enableInTreeAutoscaling") is False:
        yield ctx.finding(
            "RL018",
            ERROR,
            ("rayService", "enableInTreeAutoscaling"),
            f"autoscaling off with upgradeStrategy {INCREMENTAL}: KubeRay refuses the RayService "
            "('Ray Autoscaler is required'); the new cluster grows through the autoscaler",
            False,
            "enableInTreeAutoscaling: true",
            "set rayService.enableInTreeAutoscaling: true, or use NewCluster",
        )
    step, surge = opts.get("stepSizePercent", 25), opts.get("maxSurgePercent", 25)
    if isinstance(step, int) and isinstance(surge, int) and step > surge:
        yield ctx.finding(
            "RL018",
            ERROR,
            base + ("stepSizePercent",),
            f"a traffic step of {step}% beyond maxSurgePercent {surge}%: KubeRay refuses the RayService "
            "('stepSizePercent must be less than or equal to maxSurgePercent')",
            step,
            f"stepSizePercent <= maxSurgePercent ({surge})",
            "lower rayService.incrementalUpgrade.stepSizePercent or raise maxSurgePercent",
        )
    ingress = ctx.section("serve").get("ingress")
    if isinstance(ingress, dict) and ingress.get("enabled") is True:
        yield ctx.finding(
            "RL018",
            ERROR,
            ("serve", "ingress", "enabled"),
            f"an Ingress with upgradeStrategy {INCREMENTAL}: KubeRay then gives each RayCluster its own "
            "<cluster>-serve-svc and moves traffic through the Gateway <rayservice>-gateway, so the Ingress's "
            "backend Service would not exist",
            True,
            "serve.ingress.enabled: false",
            "reach Serve through the Gateway KubeRay makes (or an HTTPRoute of your own to it), "
            "or keep the Ingress with upgradeStrategy: NewCluster",
        )
