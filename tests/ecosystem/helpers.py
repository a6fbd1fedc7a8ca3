"""Shared checks for the ecosystem tests."""

from __future__ import annotations

from typing import List

PROMETHEUS_KINDS = {"ServiceMonitor", "PodMonitor"}


def crd_errors(rayservice: dict) -> List[str]:
    from rayllm_cli.checks_crd import validate_manifest

    return [str(f) for f in validate_manifest(rayservice) if f.is_error]


def builtin_errors(docs: List[dict]) -> List[str]:
    """kubernetes-validate (strict) on the built-in kinds; ray.io and the
    Prometheus Operator kinds are left to their own checks."""
    from rayllm_cli.checks_builtin import validate_builtin

    objs = [d for d in docs if d.get("kind") not in PROMETHEUS_KINDS and not d.get("apiVersion", "").startswith("ray.io/")]
    result = validate_builtin(objs, backend="kubernetes-validate")
    assert result.checked == len(objs), f"only {result.checked} of {len(objs)} objects had a schema"
    return [str(f) for f in result.findings if f.is_error]


def prometheus_errors(obj: dict) -> List[str]:
    """The required shape of a monitoring.coreos.com/v1 ServiceMonitor/PodMonitor
    (checked by hand: no schema for them ships with kubernetes-validate)."""
    errors = []
    kind = obj.get("kind")
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"{kind}: apiVersion {obj.get('apiVersion')!r}")
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        errors.append(f"{kind}: metadata.name missing")
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(f"{kind}: spec.selector must select something")
    key = {"ServiceMonitor": "endpoints", "PodMonitor": "podMetricsEndpoints"}.get(kind)
    if key is None:
        errors.append(f"unexpected kind {kind}")
        return errors
    endpoints = spec.get(key)
    if not endpoints:
        errors.append(f"{kind}: spec.{key} missing")
    allowed = {"port", "path", "interval", "scheme", "scrapeTimeout", "honorLabels", "relabelings", "metricRelabelings"}
    for i, ep in enumerate(endpoints or []):
        if not ep.get("port"):
            errors.append(f"{kind}: spec.{key}[{i}].port missing")
        extra = set(ep) - allowed
        if extra:
            errors.append(f"{kind}: spec.{key}[{i}] unknown fields {sorted(extra)}")
        if not str(ep.get("path", "/metrics")).startswith("/"):
            errors.append(f"{kind}: spec.{key}[{i}].path must be absolute")
    for field in ("namespaceSelector",):
        ns = spec.get(field)
        if ns is not None and not isinstance(ns.get("matchNames", []), list):
            errors.append(f"{kind}: spec.{field}.matchNames must be a list")
    return errors
