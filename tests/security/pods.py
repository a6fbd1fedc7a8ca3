"""The pods a rendered release makes, and the Pod Security Standards "restricted" rules.

A RayService is a custom resource: nothing that knows only Kubernetes' own
kinds (checkov, a PSS admission check run on the manifests) looks inside it.
`release_pods` therefore turns its head and worker group templates into the
Pods KubeRay creates from them, with what KubeRay adds that bears on
security:
- the head gets the autoscaler sidecar when in-tree autoscaling is on, built
  from `autoscalerOptions` (image and pull policy default to the head's);
- every worker gets the `wait-gcs-ready` init container, which KubeRay gives
  the Ray container's image, pull policy and securityContext and fixed
  200m/256Mi resources, plus the Ray container's env and volume mounts;
- the Ray containers get KubeRay's liveness and readiness probes, which it injects
  into a container that has none (tests/kuberay_rules.py: inject_probes).
CronJob, Job and Deployment pod templates come out as they are.
"""

from __future__ import annotations

import copy
from typing import Any, List, Tuple

from tests.kuberay_rules import inject_probes

WORKLOAD_TEMPLATE_PATHS = {
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Job": ("spec", "template"),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
}

# Volume types the restricted level allows (Kubernetes Pod Security Standards).
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}


def _dig(doc: dict, path: Tuple[str, ...]) -> Any:
    for key in path:
        doc = (doc or {}).get(key)
    return doc


def _pod(name: str, namespace: str, template: dict) -> dict:
    meta = {"name": name, "labels": dict((template.get("metadata") or {}).get("labels") or {})}
    if namespace:
        meta["namespace"] = namespace
    annotations = (template.get("metadata") or {}).get("annotations")
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}


def kuberay_pods(rayservice: dict) -> List[Tuple[str, dict]]:
    """(role, Pod) for the head and each worker group, as KubeRay would create them."""
    name = rayservice["metadata"]["name"]
    ns = rayservice["metadata"].get("namespace", "")
    cluster = rayservice["spec"]["rayClusterConfig"]
    out = []

    version = str(cluster.get("rayVersion", ""))
    head = _pod(f"{name}-head", ns, cluster["headGroupSpec"]["template"])
    head["spec"]["containers"][0] = inject_probes(
        head["spec"]["containers"][0], head=True, rayservice=True, ray_version=version,
        ray_start_params=cluster["headGroupSpec"].get("rayStartParams") or {})
    if cluster.get("enableInTreeAutoscaling"):
        ray = head["spec"]["containers"][0]
        opts = cluster.get("autoscalerOptions") or {}
        sidecar = {
            "name": "autoscaler",
            "image": opts.get("image", ray["image"]),
            "imagePullPolicy": opts.get("imagePullPolicy", "IfNotPresent"),
        }
        for key in ("resources", "securityContext", "env", "envFrom", "volumeMounts"):
            if key in opts:
                sidecar[key] = copy.deepcopy(opts[key])
        head["spec"]["containers"].append(sidecar)
    out.append(("head", head))

    for group in cluster.get("workerGroupSpecs") or []:
        pod = _pod(f"{name}-{group['groupName']}", ns, group["template"])
        ray = pod["spec"]["containers"][0] = inject_probes(
            pod["spec"]["containers"][0], head=False, rayservice=True, ray_version=version,
            ray_start_params=group.get("rayStartParams") or {})
        init = {
            "name": "wait-gcs-ready",
            "image": ray["image"],
            "imagePullPolicy": ray.get("imagePullPolicy", "IfNotPresent"),
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
        }
        for key in ("securityContext", "env", "volumeMounts"):
            if key in ray:
                init[key] = copy.deepcopy(ray[key])
        pod["spec"]["initContainers"] = list(pod["spec"].get("initContainers") or []) + [init]
        out.append((f"worker:{group['groupName']}", pod))
    return out


def release_pods(docs: List[dict]) -> List[Tuple[str, dict]]:
    """(role, Pod) for every pod a rendered release creates, directly or through KubeRay."""
    out = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "RayService":
            out += kuberay_pods(doc)
        elif kind == "Pod":
            out.append(("pod", doc))
        elif kind in WORKLOAD_TEMPLATE_PATHS:
            template = _dig(doc, WORKLOAD_TEMPLATE_PATHS[kind])
            ns = doc["metadata"].get("namespace", "")
            out.append((f"{kind}:{doc['metadata']['name']}", _pod(doc["metadata"]["name"], ns, template)))
    return out


def containers_of(spec: dict) -> List[Tuple[str, dict]]:
    return [(f"{field}[{c.get('name')}]", c) for field in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(field) or []]


def restricted_violations(pod: dict) -> List[str]:
    """What keeps a Pod from the PSS "restricted" level (baseline included), one line each."""
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    bad: List[str] = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            bad.append(f"{host}: true")
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            bad.append(f"volume {vol.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)} not allowed")
    if psc.get("sysctls"):
        bad.append("securityContext.sysctls set")
    if (psc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t"):
        bad.append("pod seLinuxOptions.type not allowed")
    if psc.get("runAsUser") == 0 or psc.get("runAsGroup") == 0:
        bad.append("pod runs as uid/gid 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append(f"pod seccompProfile {pod_seccomp}")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("windows hostProcess")

    for where, c in containers_of(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{where}: capabilities.drop lacks ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            bad.append(f"{where}: capabilities.add {sorted(extra)}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            bad.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{where}: seccompProfile {seccomp}")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(f"{where}: procMount {sc.get('procMount')}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{where}: hostPort {port['hostPort']}")
    return bad
