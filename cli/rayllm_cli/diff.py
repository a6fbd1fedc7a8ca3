"""``ray-llm diff OLD NEW``: what applying NEW over OLD does, before anyone applies it.

Both sides are rendered with the real ``helm`` (a values file; or, for OLD, the manifests of a
release as ``helm get manifest`` prints them), then compared the way the two controllers that
act on a RayService compare them:

* **Serve** (in place, through ``serveConfigV2``): an application is rebuilt, and every one of
  its deployments' replicas replaced, when its *code version* changes: Serve hashes its
  ``import_path``, ``args`` and ``runtime_env`` (and request routers / autoscaling policies
  named in ``deployments``; ray/serve/_private/deploy_utils.py ``get_app_code_version``).
  Anything else (a route, ``deployments`` overrides) is applied to the running replicas. With
  ``max_surge_percent`` 0 (Serve's default) the old replica stops before its replacement starts.
* **KubeRay** (``rayClusterConfig``): it hashes the cluster spec with the fields the autoscaler
  moves muted (replicas, min/max replicas, workers to delete, tolerations, scheduling gates,
  upgrade strategy; ray-operator/controllers/ray/utils/util.go
  ``GenerateHashWithoutReplicasAndWorkersToDelete``, KubeRay 1.7). Equal: nothing to do.
  Equal but for worker groups added at the end: the running cluster is updated in place.
  Anything else: with ``upgradeStrategy: NewCluster`` a whole new RayCluster is built next to
  the old one and traffic moves when its apps are ready (rayservice_controller.go
  ``shouldPrepareNewCluster``); with ``None`` the running cluster is left as it is. A change to
  replica bounds alone is therefore applied nowhere until one of those happens.

Exit codes, as diff(1): 0 no difference, 1 differences, 2 trouble (bad input, helm failed).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .errors import RayLLMError, UsageError, format_path


@dataclass
class Release:
    """The objects one side renders to, and what they mean for KubeRay and Serve."""

    label: str
    docs: List[dict]
    values: Optional[dict] = None  # merged values, when the side was rendered here

    def rayservice(self) -> dict:
        found = [d for d in self.docs if d.get("kind") == "RayService"]
        if len(found) != 1:
            raise RayLLMError(
                message=f"{self.label}: got {len(found)} RayService objects; expected exactly one",
                fix="pass a ray-llm values file or the manifests of one ray-llm release",
            )
        return found[0]

    def serve_apps(self) -> Dict[str, dict]:
        config = yaml.safe_load(self.rayservice()["spec"].get("serveConfigV2") or "") or {}
        return {a["name"]: a for a in config.get("applications") or []}

    def serve_config(self) -> dict:
        return yaml.safe_load(self.rayservice()["spec"].get("serveConfigV2") or "") or {}

    def cluster(self) -> dict:
        return self.rayservice()["spec"]["rayClusterConfig"]

    def strategy(self) -> dict:
        return self.rayservice()["spec"].get("upgradeStrategy") or {"type": "NewCluster"}

    def config_maps(self) -> Dict[str, dict]:
        return {d["metadata"]["name"]: d.get("data") or {} for d in self.docs if d.get("kind") == "ConfigMap"}


# --------------------------------------------------------------------------- Serve


def code_version_inputs(app: dict) -> dict:
    """What Serve hashes into an application's code version (deploy_utils.get_app_code_version)."""
    deployments = app.get("deployments") or []
    return {
        "import_path": app.get("import_path"),
        "runtime_env": app.get("runtime_env") or {},
        "args": app.get("args") or {},
        "autoscaling_policy": app.get("autoscaling_policy"),
        "deployment_autoscaling_policies": [
            (d.get("autoscaling_config") or {}).get("policy")
            for d in deployments
            if isinstance(d.get("autoscaling_config"), dict)
        ],
        "request_router_configs": [
            d.get("request_router_config") for d in deployments if isinstance(d.get("request_router_config"), dict)
        ],
    }


def _model_files(app: dict) -> Dict[str, str]:
    """model name (the file's stem) -> its content-addressed path, for a Ray Serve LLM app."""
    args = app.get("args") or {}
    paths = list(args.get("llm_configs") or []) + ([args["llm_config"]] if args.get("llm_config") else [])
    return {Path(p).name.split(".", 1)[0]: p for p in paths if isinstance(p, str)}


def changed_keys(old: Any, new: Any, path: Tuple[Any, ...] = (), limit: int = 40) -> List[str]:
    """Paths (`a.b[0]`) where two JSON-like trees differ, with the old and new leaf values."""
    out: List[str] = []

    def walk(a: Any, b: Any, p: Tuple[Any, ...]) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                if k not in a:
                    out.append(f"{format_path(p + (k,))}: added")
                elif k not in b:
                    out.append(f"{format_path(p + (k,))}: removed")
                else:
                    walk(a[k], b[k], p + (k,))
        elif isinstance(a, list) and isinstance(b, list) and _named(a) and _named(b):
            # volumes, mounts, env, containers: by name, so an added volume reads as one line
            walk({x["name"]: x for x in a}, {y["name"]: y for y in b}, p)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, p + (i,))
        elif isinstance(a, list) and isinstance(b, list):
            # items added or removed (an upstream, a bundle): the items themselves, not two truncated lists
            olds, news = [_json(x) for x in a], [_json(y) for y in b]
            out.extend(f"{format_path(p)}: + {y[:100]}" for y in news if y not in olds)
            out.extend(f"{format_path(p)}: - {x[:100]}" for x in olds if x not in news)
        elif a != b:
            out.append(f"{format_path(p) or '(all)'}: {_json(a)[:80]} -> {_json(b)[:80]}")

    walk(old, new, path)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _named(items: list) -> bool:
    names = [x.get("name") for x in items if isinstance(x, dict)]
    return len(names) == len(items) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def serve_changes(old: Release, new: Release) -> Dict[str, Any]:
    a, b = old.serve_apps(), new.serve_apps()
    apps: List[Dict[str, Any]] = []
    for name in sorted(set(a) | set(b)):
        if name not in a:
            apps.append({"app": name, "change": "added", "models": sorted(_model_files(b[name]))})
            continue
        if name not in b:
            apps.append({"app": name, "change": "deleted", "models": sorted(_model_files(a[name]))})
            continue
        if a[name] == b[name]:
            continue
        before, after = code_version_inputs(a[name]), code_version_inputs(b[name])
        if before != after:
            files_a, files_b = _model_files(a[name]), _model_files(b[name])
            moved = sorted(m for m in set(files_a) | set(files_b) if files_a.get(m) != files_b.get(m))
            riding = sorted(m for m in files_b if m not in moved)
            apps.append(
                {
                    "app": name,
                    "change": "redeployed",
                    "models_changed": moved,
                    "models_restarted_with_them": riding,
                    "why": changed_keys(before, after)[:8],
                }
            )
        else:
            apps.append({"app": name, "change": "updated in place", "why": changed_keys(a[name], b[name])[:8]})
    top_a = {k: v for k, v in old.serve_config().items() if k != "applications"}
    top_b = {k: v for k, v in new.serve_config().items() if k != "applications"}
    return {"apps": apps, "http": changed_keys(top_a, top_b) if top_a != top_b else []}


# --------------------------------------------------------------------------- KubeRay


def hashed_cluster_spec(cluster: dict) -> dict:
    """The cluster spec as KubeRay hashes it (util.go GenerateHashWithoutReplicasAndWorkersToDelete,
    rayservice_controller.go rayClusterSpecForHashing): the fields the autoscaler or other
    controllers move are muted."""
    spec = copy.deepcopy(cluster)
    spec.pop("suspend", None)
    spec.pop("upgradeStrategy", None)
    head_pod = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    head_pod.pop("tolerations", None)
    head_pod.pop("schedulingGates", None)
    for group in spec.get("workerGroupSpecs") or []:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
        pod = (group.get("template") or {}).get("spec") or {}
        pod.pop("tolerations", None)
        pod.pop("schedulingGates", None)
    return spec


def _groups(cluster: dict) -> List[dict]:
    return list(cluster.get("workerGroupSpecs") or [])


def cluster_changes(old: Release, new: Release) -> Dict[str, Any]:
    a, b = old.cluster(), new.cluster()
    ha, hb = hashed_cluster_spec(a), hashed_cluster_spec(b)
    strategy = (new.strategy() or {}).get("type", "NewCluster")
    bounds = []
    for g in _groups(b):
        before = next((x for x in _groups(a) if x["groupName"] == g["groupName"]), None)
        if before and (before.get("minReplicas"), before.get("maxReplicas")) != (
            g.get("minReplicas"),
            g.get("maxReplicas"),
        ):
            bounds.append(
                f"{g['groupName']}: replicas {before.get('minReplicas')}..{before.get('maxReplicas')} -> "
                f"{g.get('minReplicas')}..{g.get('maxReplicas')}"
            )
    if ha == hb:
        # KubeRay mutes replica bounds when it hashes the spec, so a change to them alone neither updates
        # the running RayCluster nor builds a new one (rayservice_controller.go shouldUpdateCluster):
        # they take effect with the next new cluster or in-place update.
        return {
            "change": "none" if not bounds else "replica bounds only",
            "strategy": strategy,
            "autoscaler_bounds": bounds,
            "why": [],
        }
    n_old = len(_groups(a))
    appended = _groups(b)[n_old:]
    trimmed = copy.deepcopy(hb)
    trimmed["workerGroupSpecs"] = (trimmed.get("workerGroupSpecs") or [])[:n_old]
    if appended and trimmed == ha:
        return {
            "change": "worker groups added in place",
            "strategy": strategy,
            "autoscaler_bounds": bounds,
            "added_groups": [g["groupName"] for g in appended],
            "why": [],
        }
    why = changed_keys(_named_groups(ha), _named_groups(hb))
    change = {
        "NewCluster": "new cluster",
        "NewClusterWithIncrementalUpgrade": "new cluster, incrementally",
        "None": "not applied",
    }.get(strategy, "new cluster")
    return {"change": change, "strategy": strategy, "autoscaler_bounds": bounds, "why": why}


def _named_groups(spec: dict) -> dict:
    """workerGroupSpecs keyed by group name, so a diff path says which group moved."""
    out = dict(spec)
    out["workerGroupSpecs"] = {g.get("groupName", str(i)): g for i, g in enumerate(spec.get("workerGroupSpecs") or [])}
    return out


def _gpus_per_node(group: dict) -> int:
    res = group.get("resources") or {}
    try:
        return int(float(res.get("GPU", 0)))
    except (TypeError, ValueError):
        return 0


def _pool(group: dict) -> str:
    selector = ((group.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) or "(any node)"


def upgrade_peak(new: Release, change: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Extra GPUs and node pools the upgrade needs at its peak, beside the running cluster."""
    if not change["change"].startswith("new cluster"):
        return None
    pools: Dict[str, Dict[str, Any]] = {}
    floor = _new_cluster_floor(new)
    total = 0
    for g in _groups(new.cluster()):
        nodes = floor.get(g["groupName"], 0)
        gpus = nodes * _gpus_per_node(g)
        if not nodes:
            continue
        total += gpus
        pools[g["groupName"]] = {"nodes": nodes, "gpus": gpus, "node_pool": _pool(g)}
    opts = (new.strategy() or {}).get("clusterUpgradeOptions") or {}
    if change["change"] == "new cluster, incrementally":
        surge = int(opts.get("maxSurgePercent", 100))
        for entry in pools.values():
            per_node = entry["gpus"] // max(1, entry["nodes"])
            entry["nodes"] = math.ceil(entry["nodes"] * surge / 100)
            entry["gpus"] = entry["nodes"] * per_node
        total = sum(e["gpus"] for e in pools.values())
        note = (
            f"the new cluster grows by stepSizePercent {opts.get('stepSizePercent')}% of the capacity every "
            f"{opts.get('intervalSeconds')} s, at most maxSurgePercent {surge}% beyond it, while traffic moves "
            "over through the Gateway API; the old cluster shrinks as it does"
        )
    else:
        note = (
            "the new cluster starts beside the old one, which keeps serving (at whatever size it has scaled "
            "to) until every app on the new one is RUNNING; the new one needs at least these nodes to start "
            "its apps at their min (or initial) replicas, more if traffic makes Serve scale it up first"
        )
    return {"extra_gpus_at_least": total, "pools": pools, "note": note}


def _new_cluster_floor(new: Release) -> Dict[str, int]:
    """Worker nodes per group the new cluster needs to start its apps: minReplicas, or the GPUs of the
    models' min/initial replicas (from the values, when this side was rendered here)."""
    floor: Dict[str, int] = {g["groupName"]: int(g.get("minReplicas") or 0) for g in _groups(new.cluster())}
    if new.values is None:
        return floor
    from .plan import build_plan

    for tier in build_plan(new.values)["tiers"]:
        if tier["tier"] in floor:
            floor[tier["tier"]] = max(floor[tier["tier"]], tier["workers_needed_at_start"])
    return floor


# --------------------------------------------------------------------------- ConfigMaps


def config_map_changes(old: Release, new: Release) -> List[Dict[str, Any]]:
    a, b = old.config_maps(), new.config_maps()
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a:
            out.append({"configmap": name, "change": "added", "keys": sorted(b[name])})
        elif name not in b:
            out.append({"configmap": name, "change": "deleted", "keys": sorted(a[name])})
        elif a[name] != b[name]:
            out.append(
                {
                    "configmap": name,
                    "change": "changed",
                    "added": sorted(set(b[name]) - set(a[name])),
                    "removed": sorted(set(a[name]) - set(b[name])),
                    "edited": sorted(k for k in set(a[name]) & set(b[name]) if a[name][k] != b[name][k]),
                }
            )
    return out


def other_changes(old: Release, new: Release) -> List[str]:
    def index(r: Release) -> Dict[str, dict]:
        return {
            f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}": d
            for d in r.docs
            if d.get("kind") not in ("RayService", "ConfigMap")
        }

    a, b = index(old), index(new)
    return (
        [f"+ {k}" for k in sorted(set(b) - set(a))]
        + [f"- {k}" for k in sorted(set(a) - set(b))]
        + [f"~ {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    )


# --------------------------------------------------------------------------- the whole diff


def compare(old: Release, new: Release) -> Dict[str, Any]:
    serve = serve_changes(old, new)
    cluster = cluster_changes(old, new)
    report: Dict[str, Any] = {
        "old": old.label,
        "new": new.label,
        "serve": serve,
        "cluster": cluster,
        "upgrade_peak": upgrade_peak(new, cluster),
        "configmaps": config_map_changes(old, new),
        "other_objects": other_changes(old, new),
        "ray_version": _ray_versions(old, new),
    }
    report["differs"] = bool(
        serve["apps"] or serve["http"] or cluster["change"] != "none" or report["configmaps"] or report["other_objects"]
    )
    return report


def _ray_versions(old: Release, new: Release) -> Optional[str]:
    a, b = old.cluster().get("rayVersion"), new.cluster().get("rayVersion")
    return None if a == b else f"{a} -> {b}"


def render_text(report: Dict[str, Any]) -> str:
    lines = [f"ray-llm diff: {report['old']} -> {report['new']}"]
    if not report["differs"]:
        return "\n".join(lines + ["no difference: nothing would change"])
    serve = report["serve"]
    lines.append("")
    lines.append("Serve (serveConfigV2, applied in place on the serving cluster):")
    for app in serve["apps"]:
        if app["change"] == "redeployed":
            lines.append(
                f"  ~ {app['app']}: redeployed: every replica of the app is replaced "
                "(its import_path/args/runtime_env changed)"
            )
            if app["models_changed"]:
                lines.append(f"      models changed: {', '.join(app['models_changed'])}")
            if app["models_restarted_with_them"]:
                lines.append(f"      restarted with them (same app): {', '.join(app['models_restarted_with_them'])}")
            lines += [f"      {w}" for w in app["why"][:4]]
        elif app["change"] == "updated in place":
            lines.append(f"  ~ {app['app']}: updated in place (no restart): " + "; ".join(app["why"][:3]))
        else:
            lines.append(
                f"  {'+' if app['change'] == 'added' else '-'} {app['app']}: {app['change']}"
                + (f" ({', '.join(app['models'])})" if app.get("models") else "")
            )
    if serve["http"]:
        lines.append(
            "  ! http_options/proxy_location changed: Serve applies them only on a new cluster: "
            + "; ".join(serve["http"][:3])
        )
    if not serve["apps"] and not serve["http"]:
        lines.append("  (no application changes)")
    cluster = report["cluster"]
    lines.append("")
    lines.append(f"KubeRay (rayClusterConfig, upgradeStrategy {cluster['strategy']}):")
    if report["ray_version"]:
        lines.append(f"  rayVersion {report['ray_version']}")
    verdict = {
        "none": "  no cluster change",
        "replica bounds only": "  no new cluster, and NOT applied to the running cluster: KubeRay ignores min/max "
        "replicas when it compares specs, so they take effect only with the next new cluster "
        "or in-place update (e.g. a tier added at the end)",
        "worker groups added in place": "  no new cluster: worker groups added at the end are added to the running "
        "cluster: " + ", ".join(cluster.get("added_groups", [])),
        "new cluster": "  a NEW RayCluster is built beside the running one; traffic moves to it when its apps are "
        "RUNNING, then the old one is deleted. Because:",
        "new cluster, incrementally": "  a NEW RayCluster is built and traffic moves to it step by step (Gateway "
        "API). Because:",
        "not applied": "  the cluster spec changed but upgradeStrategy None leaves the running cluster as it is "
        "(these changes do not apply until it is recreated). Changed:",
    }[cluster["change"]]
    lines.append(verdict)
    lines += [f"    - {w}" for w in cluster["why"][:12]]
    if len(cluster["why"]) > 12:
        lines.append(f"    - ... {len(cluster['why']) - 12} more")
    lines += [f"  autoscaler bounds: {b}" for b in cluster["autoscaler_bounds"]]
    peak = report["upgrade_peak"]
    if peak:
        pools = (
            "; ".join(
                f"{g}: {p['nodes']} node(s), {p['gpus']} GPU(s) [{p['node_pool']}]" for g, p in peak["pools"].items()
            )
            or "no GPU node (every model scales from zero)"
        )
        lines.append(
            f"  upgrade peak: at least {peak['extra_gpus_at_least']} extra GPU(s) beside the running cluster: {pools}"
        )
        lines.append(f"    ({peak['note']})")
    lines.append("")
    lines.append("ConfigMaps:")
    for cm in report["configmaps"]:
        if cm["change"] == "changed":
            parts = [f"+{k}" for k in cm["added"]] + [f"-{k}" for k in cm["removed"]] + [f"~{k}" for k in cm["edited"]]
            lines.append(f"  ~ {cm['configmap']}: " + " ".join(parts[:8]) + (" ..." if len(parts) > 8 else ""))
        else:
            lines.append(f"  {'+' if cm['change'] == 'added' else '-'} {cm['configmap']}")
    if not report["configmaps"]:
        lines.append("  (none)")
    if report["other_objects"]:
        lines.append("")
        lines.append("Other objects: " + ", ".join(report["other_objects"]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def _looks_rendered(path: Path) -> bool:
    """A file of Kubernetes manifests (e.g. `helm get manifest`) rather than values."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError):
        return False
    return any("apiVersion" in d and "kind" in d for d in docs)


def load_side(label: str, files: Sequence[Path], sets: Sequence[str], release: str, namespace: str) -> Release:
    """One side: rendered manifests as they are, or values rendered with the real helm."""
    from .helm_run import HelmRender
    from .validate import validate_values

    if len(files) == 1 and files[0].is_file() and _looks_rendered(files[0]):
        docs = [d for d in yaml.safe_load_all(files[0].read_text(encoding="utf-8")) if isinstance(d, dict)]
        return Release(label, docs)
    for f in files:
        if str(f) != "-" and not f.is_file():
            raise UsageError(f"got {f}, which is not a file", fix="pass values files or a rendered manifest")
    with HelmRender(list(files), list(sets), [], release, namespace) as render:
        result = validate_values(list(files), list(sets), [], release=release)
        if not result.valid:
            problems = "; ".join(f"{f.path}: {f.message}" for f in result.errors[:5])
            raise RayLLMError(
                message=f"{label}: the values are invalid ({problems})", fix=f"run `ray-llm validate` on {label}"
            )
        proc = render.result()
    if proc.returncode != 0:
        raise RayLLMError(message=f"{label}: helm template failed: {proc.stderr.strip()[-800:]}")
    docs = [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]
    return Release(label, docs, values=result.merged.values if result.merged else None)
