"""KubeRay's own rules, restated from its source for the tests, each with the line it comes from.

Everything here is read from KubeRay v1.7.0 (ray-project/kuberay, tag v1.7.0), the operator
release the chart targets; a test that applies a rule cites it through these functions. When
KubeRay changes one, update the function and its citation together.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

KUBERAY = "v1.7.0"

# ray-operator/controllers/ray/utils/constant.go:306-344 (v1.7.0)
READINESS = {"initialDelaySeconds": 10, "timeoutSeconds": 2, "periodSeconds": 5, "successThreshold": 1,
             "failureThreshold": 10}
HEAD_READINESS_TIMEOUT = 5
SERVE_READINESS_FAILURE_THRESHOLD = 1
LIVENESS = {"initialDelaySeconds": 30, "timeoutSeconds": 2, "periodSeconds": 5, "successThreshold": 1,
            "failureThreshold": 120}
HEAD_LIVENESS_TIMEOUT = 5
DEFAULT_AGENT_PORT = 52365  # constant.go:109
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_SERVING_PORT = 8000  # constant.go:110
SERVING_PORT_NAME = "serve"  # constant.go:116
NODE_HEALTH_PATH = "/api/healthz"  # constant.go:344
WGET = "wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"  # constant.go:340

# constant.go:375-378
MAX_RAYCLUSTER_NAME_LENGTH = 53
MAX_RAYSERVICE_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # k8s.io/apimachinery IsDNS1035Label, max 63


def _version_at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> List[int]:
        return [int(x) for x in re.findall(r"\d+", v)[:3]]
    return parts(version) >= parts(minimum)


def _find_container_port(container: Dict[str, Any], name: str, default: int) -> int:
    """utils/util.go:673 FindContainerPort: the port named `name`, else `default`."""
    for port in container.get("ports") or []:
        if port.get("name") == name:
            return int(port["containerPort"])
    return default


def inject_probes(container: Dict[str, Any], *, head: bool, rayservice: bool, ray_version: str,
                  ray_start_params: Dict[str, str]) -> Dict[str, Any]:
    """common/pod.go:732-830 initLivenessAndReadinessProbe: the probes KubeRay gives a Ray
    container that defines none (pod.go:775 and :795 leave a container's own probes alone).

    Ray >= 2.53 (pod.go:721-729) gets one HTTP check of the node's health; a RayService worker's
    readiness probe is instead an exec of the raylet check and the node's Serve proxy check
    (`/-/healthz` on the container port named "serve"), failing after one miss (pod.go:816-826).
    """
    out = dict(container)
    agent = int(ray_start_params.get("dashboard-agent-listen-port", DEFAULT_AGENT_PORT))
    dashboard = int(ray_start_params.get("dashboard-port", DEFAULT_DASHBOARD_PORT))
    http = _version_at_least(ray_version, "2.53.0")
    raylet = WGET.format(timeout=READINESS["timeoutSeconds"], port=agent, path="api/local_raylet_healthz")
    gcs = WGET.format(timeout=READINESS["failureThreshold"], port=dashboard, path="api/gcs_healthz")
    commands = [raylet, gcs] if head else [raylet]
    action: Dict[str, Any] = ({"httpGet": {"path": NODE_HEALTH_PATH, "port": agent}} if http
                              else {"exec": {"command": ["bash", "-c", " && ".join(commands)]}})
    if "livenessProbe" not in out:
        out["livenessProbe"] = {**LIVENESS, **action}
        if head:
            out["livenessProbe"]["timeoutSeconds"] = HEAD_LIVENESS_TIMEOUT
    if "readinessProbe" not in out:
        probe = {**READINESS, **action}
        if head:
            probe["timeoutSeconds"] = HEAD_READINESS_TIMEOUT
        if rayservice and not head:
            serve_port = _find_container_port(container, SERVING_PORT_NAME, DEFAULT_SERVING_PORT)
            proxy = WGET.format(timeout=READINESS["initialDelaySeconds"], port=serve_port, path="-/healthz")
            probe.pop("httpGet", None)
            probe["failureThreshold"] = SERVE_READINESS_FAILURE_THRESHOLD
            probe["exec"] = {"command": ["bash", "-c", " && ".join(commands + [proxy])]}
        out["readinessProbe"] = probe
    return out


def rayservice_errors(rayservice: Dict[str, Any]) -> List[str]:
    """The validation KubeRay runs before it acts on a RayService, for the fields the chart renders.

    utils/validation.go (v1.7.0): ValidateRayServiceMetadata (:632-640), ValidateRayServiceSpec
    (:680-714) with ValidateRayClusterSpec (:103-250), ValidateClusterUpgradeOptions (:717-748)."""
    errors: List[str] = []
    name = rayservice["metadata"]["name"]
    if len(name) > MAX_RAYSERVICE_NAME_LENGTH:  # :633
        errors.append(f"RayService name should be no more than {MAX_RAYSERVICE_NAME_LENGTH} characters")
    if not DNS1035_LABEL.match(name):  # :636
        errors.append("RayService name should be a valid DNS1035 label")
    spec = rayservice["spec"]
    strategy = (spec.get("upgradeStrategy") or {}).get("type")
    if strategy is not None and strategy not in ("NewClusterWithIncrementalUpgrade", "NewCluster", "None"):  # :697
        errors.append(f"Spec.UpgradeStrategy.Type value {strategy} is invalid")
    cluster = spec["rayClusterConfig"]
    errors += raycluster_spec_errors(cluster)
    if strategy == "NewClusterWithIncrementalUpgrade":
        errors += upgrade_option_errors(cluster, (spec.get("upgradeStrategy") or {}).get("clusterUpgradeOptions"))
    return errors


def _group_resources_conflict(params: Dict[str, str], resources: Optional[Dict[str, str]]) -> bool:
    """validation.go:60-68 validateRayGroupResources: Ray resources either in rayStartParams or in the
    group's `resources`, never both."""
    in_params = any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources"))
    return bool(in_params and resources)


def raycluster_spec_errors(cluster: Dict[str, Any]) -> List[str]:
    errors: List[str] = []
    head = cluster["headGroupSpec"]
    if _group_resources_conflict(head.get("rayStartParams") or {}, head.get("resources")):  # :107
        errors.append("resource fields should not be set in both rayStartParams and Resources for Head group")
    autoscaling = bool(cluster.get("enableInTreeAutoscaling"))
    options = cluster.get("autoscalerOptions") or {}
    v2 = options.get("version") == "v2"  # util.go:756-758 IsAutoscalingV2Enabled
    for group in cluster.get("workerGroupSpecs") or []:
        gname = group["groupName"]
        lo, hi = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (lo is None or hi is None):  # :125
            errors.append(f"worker group {gname} must set both minReplicas and maxReplicas when autoscaling is disabled")
        if lo is not None and hi is not None and lo > hi:  # :134-137
            errors.append(f"worker group {gname} has minReplicas {lo} greater than maxReplicas {hi}")
        if _group_resources_conflict(group.get("rayStartParams") or {}, group.get("resources")):  # :139
            errors.append(f"resource fields should not be set in both rayStartParams and Resources for {gname} group")
        if group.get("idleTimeoutSeconds") is not None and not v2:  # :1005-1027 validateWorkerGroupIdleTimeout
            errors.append(f"worker group {gname}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled")
        policy = ((group.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if autoscaling and v2 and policy not in (None, "", "Never"):  # :230-234
            errors.append(f"restartPolicy for worker group {gname} should be Never or unset when using autoscaler V2")
    return errors


def upgrade_option_errors(cluster: Dict[str, Any], options: Optional[Dict[str, Any]]) -> List[str]:
    """validation.go:717-748 ValidateClusterUpgradeOptions (NewClusterWithIncrementalUpgrade)."""
    if not cluster.get("enableInTreeAutoscaling"):
        return ["Ray Autoscaler is required for NewClusterWithIncrementalUpgrade"]
    if options is None:
        return ["ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade"]
    errors = []
    surge = options.get("maxSurgePercent", 100)  # the CRD defaults it to 100
    step = options.get("stepSizePercent")
    interval = options.get("intervalSeconds")
    if not 0 <= surge <= 100:
        errors.append("maxSurgePercent must be between 0 and 100")
    if step is None or not 0 <= step <= 100:
        errors.append("stepSizePercent must be between 0 and 100")
    elif step > surge:
        errors.append("stepSizePercent must be less than or equal to maxSurgePercent")
    if interval is None or interval <= 0:
        errors.append("intervalSeconds must be greater than 0")
    if not options.get("gatewayClassName"):
        errors.append("gatewayClassName is required for NewClusterWithIncrementalUpgrade")
    return errors
