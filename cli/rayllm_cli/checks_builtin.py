"""Offline schema checks for built-in Kubernetes kinds (ConfigMap, Service,
Ingress, ServiceAccount, Role, RoleBinding, CronJob, ...) and object-size
limits.

Backends, in order:

* ``kubeconform`` when it is on PATH (``-strict -summary -output json``);
  it needs its schema location reachable (``-schema-location default`` is
  GitHub; set ``$RAYLLM_KUBECONFORM_SCHEMA_LOCATION`` to a local mirror
  template). If it can't load schemas we fall back to the next backend.
* the ``kubernetes-validate`` package (bundled OpenAPI-derived JSON schemas),
  strict variant (unknown fields rejected), for Kubernetes
  ``$RAYLLM_K8S_VERSION`` (default :data:`DEFAULT_K8S_VERSION`).

``$RAYLLM_BUILTIN_BACKEND`` = ``kubeconform`` | ``kubernetes-validate`` forces one.

ray.io objects are skipped here (see checks_crd); kinds no backend has a
schema for (e.g. monitoring.coreos.com ServiceMonitor) are skipped with a
notice.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

import jsonschema
import yaml

from .checks_common import (
    ERROR,
    NOTICE,
    WARNING,
    Finding,
    format_path,
    manifest_finding,
    metadata_findings,
    object_ref,
    source_of,
)

__all__ = [
    "DEFAULT_K8S_VERSION",
    "ENV_K8S_VERSION",
    "ETCD_REQUEST_LIMIT",
    "LAST_APPLIED_LIMIT",
    "DATA_SIZE_LIMIT",
    "BuiltinResult",
    "validate_builtin",
    "object_size_findings",
]

ENV_K8S_VERSION = "RAYLLM_K8S_VERSION"
ENV_BACKEND = "RAYLLM_BUILTIN_BACKEND"
ENV_KUBECONFORM_SCHEMAS = "RAYLLM_KUBECONFORM_SCHEMA_LOCATION"
# Oldest Kubernetes minor the chart supports; schemas of newer minors only add
# fields, so validating against the oldest catches use of too-new fields.
DEFAULT_K8S_VERSION = "1.30"

ETCD_REQUEST_LIMIT = 1_572_864  # etcd --max-request-bytes default (1.5 MiB)
LAST_APPLIED_LIMIT = 262_144  # 256 KiB: total annotation size the API server accepts
DATA_SIZE_LIMIT = 1_048_576  # 1 MiB: ConfigMap/Secret data the API server accepts (core.MaxSecretSize)

BACKEND_KUBECONFORM = "kubeconform"
BACKEND_KV = "kubernetes-validate"


@dataclass
class BuiltinResult:
    """Result of validate_builtin: which backend ran, against which Kubernetes
    version, and the findings (errors, plus notices for skipped objects)."""

    backend: str
    kubernetes_version: str
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0  # objects actually validated against a schema
    skipped: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __iter__(self):
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)


def _is_ray(obj: Any) -> bool:
    return isinstance(obj, dict) and str(obj.get("apiVersion", "")).startswith("ray.io/")


def _k8s_version(version: str | None) -> str:
    v = (version or os.environ.get(ENV_K8S_VERSION) or DEFAULT_K8S_VERSION).lstrip("v")
    return v


# --------------------------------------------------------------------------- kubernetes-validate


@functools.lru_cache(maxsize=1)
def _kv_module():
    try:
        import kubernetes_validate.utils as kvu
    except ImportError as exc:  # pragma: no cover - depends on env
        raise RuntimeError(
            "got: no kubeconform on PATH and no kubernetes-validate package; expected: one "
            "of them; do: pip install 'ray-llm[test]' (or pip install kubernetes-validate)"
        ) from exc
    return kvu


def _kv_schema_version(k8s_version: str) -> str:
    """Newest schema set the package ships that is not newer than k8s_version."""
    from packaging.version import Version

    kvu = _kv_module()
    want = Version(".".join(k8s_version.split(".")[:2]))
    versions = [v for v in kvu.all_versions() if Version(".".join(v.split(".")[:2])) <= want]
    if not versions:
        raise RuntimeError(
            f"kubernetes-validate ships no schemas for Kubernetes <= {k8s_version}"
            f" (has {kvu.all_versions()[0]}..{kvu.latest_version()})"
        )
    return versions[-1]


@functools.lru_cache(maxsize=None)
def _kv_validator(schema_version: str, kind: str, api_version: str):
    """Compiled strict validator for (kind, apiVersion), or None when the
    package has no schema for it. Cached: _definitions.json is several MB."""
    import re

    from referencing import Registry, Resource

    kvu = _kv_module()
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{schema_version}-local-strict"
    try:
        schema = kvu.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", schema_version)
    except FileNotFoundError:
        return None
    definitions = _kv_definitions(schema_dir, schema_version)
    registry = Registry().with_resources(
        [
            (schema.get("$id", ""), Resource.from_contents(schema)),
            (definitions.get("$id", ""), Resource.from_contents(definitions)),
        ]
    )
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _kv_definitions(schema_dir: str, schema_version: str) -> dict:
    return _kv_module().schema_contents(f"{schema_dir}/_definitions.json", schema_version)


def _kv_validate(objs: list[Any], k8s_version: str) -> BuiltinResult:
    schema_version = _kv_schema_version(k8s_version)
    result = BuiltinResult(BACKEND_KV, schema_version)
    for obj in objs:
        ref, src = object_ref(obj), source_of(obj)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not isinstance(kind, str) or not isinstance(api_version, str):
            result.findings.append(
                manifest_finding("", "missing apiVersion/kind", ERROR, "builtin:" + BACKEND_KV, ref, src)
            )
            continue
        validator = _kv_validator(schema_version, kind, api_version)
        if validator is None:
            result.skipped += 1
            result.findings.append(
                manifest_finding(
                    "",
                    f"no schema for {api_version} {kind} in Kubernetes {schema_version} "
                    "(a CRD kind or a removed API); not schema-checked",
                    NOTICE,
                    "builtin:" + BACKEND_KV,
                    ref,
                    src,
                )
            )
            continue
        result.checked += 1
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            result.findings.append(_kv_error_to_finding(err, obj))
    return result


def _kv_error_to_finding(err: jsonschema.ValidationError, obj: Any) -> Finding:
    base = list(err.absolute_path)
    msg = err.message
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set((err.schema.get("properties") or {}).keys())
        extras = [k for k in err.instance if k not in known]
        if len(extras) == 1:
            base.append(extras[0])
        msg = "unknown field(s): " + ", ".join(repr(k) for k in extras)
    elif err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        if missing:
            base.append(missing)
        msg = f"required field {missing!r} is missing"
    return manifest_finding(format_path(base), msg, ERROR, "builtin:" + BACKEND_KV, object_ref(obj), source_of(obj))


# --------------------------------------------------------------------------- kubeconform


def _kubeconform_validate(binary: str, objs: list[Any], k8s_version: str) -> BuiltinResult | None:
    """Run kubeconform; None when it could not load schemas (offline)."""
    result = BuiltinResult(BACKEND_KUBECONFORM, k8s_version)
    with tempfile.TemporaryDirectory(prefix="rayllm-kubeconform-") as tmp:
        files: dict[str, Any] = {}
        for i, obj in enumerate(objs):
            path = os.path.join(tmp, f"{i:04d}.yaml")
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(dict(obj), fh, sort_keys=False)
            files[path] = obj
        cmd = [
            binary,
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            f"{k8s_version}.0" if k8s_version.count(".") == 1 else k8s_version,
            "-ignore-missing-schemas",
        ]
        extra = os.environ.get(ENV_KUBECONFORM_SCHEMAS)
        if extra:
            cmd += ["-schema-location", extra]
        else:
            cmd += ["-schema-location", "default"]
        proc = subprocess.run(cmd + list(files), capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return None
    resources = report.get("resources") or []
    if any(r.get("status") == "statusError" for r in resources):
        # Typically "could not find schema" because the location is unreachable.
        return None
    seen: set[str] = set()
    for r in resources:
        obj = files.get(r.get("filename", ""), {})
        seen.add(r.get("filename", ""))
        ref, src = object_ref(obj), source_of(obj)
        status = r.get("status")
        if status == "statusSkipped":
            result.skipped += 1
            result.findings.append(
                manifest_finding(
                    "", "no schema for this kind; not schema-checked", NOTICE, "builtin:kubeconform", ref, src
                )
            )
            continue
        result.checked += 1
        if status == "statusInvalid":
            errs = r.get("validationErrors") or []
            if not errs:
                result.findings.append(
                    manifest_finding("", r.get("msg", "invalid"), ERROR, "builtin:kubeconform", ref, src)
                )
            for e in errs:
                parts = [int(p) if p.isdigit() else p for p in str(e.get("path", "")).strip("/").split("/") if p]
                result.findings.append(
                    manifest_finding(format_path(parts), e.get("msg", ""), ERROR, "builtin:kubeconform", ref, src)
                )
    # Valid resources are not listed unless -verbose; count them as checked.
    result.checked += len(files) - len(seen)
    return result


# --------------------------------------------------------------------------- public


def validate_builtin(
    objs: Iterable[Any], *, kubernetes_version: str | None = None, backend: str | None = None
) -> BuiltinResult:
    """Schema-check the non-ray.io objects in ``objs`` (strict: unknown fields
    are errors) and their ObjectMeta. Returns a BuiltinResult whose
    ``backend`` says which backend ran."""
    objs = list(objs)
    version = _k8s_version(kubernetes_version)
    builtin = [o for o in objs if isinstance(o, dict) and not _is_ray(o)]
    skipped_ray = [o for o in objs if _is_ray(o)]
    choice = backend or os.environ.get(ENV_BACKEND)
    result: BuiltinResult | None = None
    fallback_note: Finding | None = None
    kubeconform = shutil.which("kubeconform")
    if choice == BACKEND_KUBECONFORM and not kubeconform:
        raise RuntimeError(
            f"got: {ENV_BACKEND}=kubeconform but no kubeconform on PATH; "
            "expected: kubeconform installed; do: install it or unset "
            f"{ENV_BACKEND}"
        )
    if kubeconform and choice in (None, "", BACKEND_KUBECONFORM) and builtin:
        result = _kubeconform_validate(kubeconform, builtin, version)
        if result is None:
            if choice == BACKEND_KUBECONFORM:
                raise RuntimeError(
                    "kubeconform could not load its schemas (offline?); set "
                    f"{ENV_KUBECONFORM_SCHEMAS} to a local schema location"
                )
            fallback_note = manifest_finding(
                "", "kubeconform could not load schemas (offline?); fell back to kubernetes-validate", NOTICE, "builtin"
            )
    if result is None:
        result = _kv_validate(builtin, version)
    if fallback_note:
        result.findings.insert(0, fallback_note)
    for obj in builtin:
        seen = {(f.obj, f.path) for f in result.findings}
        result.findings += [f for f in metadata_findings(obj) if (f.obj, f.path) not in seen]
    for obj in skipped_ray:
        result.skipped += 1
        result.findings.append(
            manifest_finding(
                "",
                "ray.io object: checked against the KubeRay CRD (checks_crd.validate_manifest), not here",
                NOTICE,
                "builtin",
                object_ref(obj),
                source_of(obj),
            )
        )
    return result


def object_size(obj: Any) -> int:
    """Bytes of the object as compact JSON: what the API server and etcd receive, and what
    client-side apply copies into the last-applied annotation."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def data_size(obj: Any) -> int | None:
    """Bytes the API server counts against a ConfigMap's or Secret's 1 MiB data
    limit (``ValidateConfigMap`` / ``ValidateSecret``): the UTF-8 length of every
    ``data`` (and Secret ``stringData``) value plus the decoded length of every
    ``binaryData`` value (Secret ``data`` is base64 too). None for other kinds."""
    import base64
    import binascii

    if not isinstance(obj, dict) or obj.get("apiVersion") != "v1" or obj.get("kind") not in ("ConfigMap", "Secret"):
        return None

    def decoded(value: Any) -> int:
        try:
            return len(base64.b64decode(str(value), validate=False))
        except (binascii.Error, ValueError):
            return len(str(value).encode())

    def values(key: str) -> list:
        section = obj.get(key)
        return list(section.values()) if isinstance(section, dict) else []

    if obj["kind"] == "ConfigMap":
        return sum(len(str(v).encode()) for v in values("data")) + sum(decoded(v) for v in values("binaryData"))
    return sum(decoded(v) for v in values("data")) + sum(len(str(v).encode()) for v in values("stringData"))


def object_size_findings(obj: Any) -> list[Finding]:
    """Size limits that bite large rendered objects (e.g. a RayService whose
    serveConfigV2 embeds many models, or a ConfigMap with a big chat template):

    * error when a ConfigMap's (or Secret's) data exceeds 1 MiB
      (:func:`data_size`): the API server's validation rejects it;
    * error when the compact JSON exceeds etcd's default request limit
      (1,572,864 bytes): the API server can't store it;
    * warning when it exceeds 262,144 bytes: ``kubectl apply`` (client-side)
      copies the whole object into the ``kubectl.kubernetes.io/last-applied-
      configuration`` annotation, and annotations are limited to 256 KiB in
      total, so it fails with "metadata.annotations: Too long"; use
      ``kubectl apply --server-side``, ``kubectl create``/``replace`` or Helm
      (Helm doesn't write that annotation).
    """
    ref, src = object_ref(obj), source_of(obj)
    size = object_size(obj)
    out: list[Finding] = []
    data = data_size(obj)
    if data is not None and data > DATA_SIZE_LIMIT:
        out.append(
            manifest_finding(
                "data",
                f"{obj.get('kind')} data totals {data:,} bytes; the API server "
                f"rejects more than {DATA_SIZE_LIMIT:,} bytes (1 MiB, summed over the "
                "values of data and binaryData): split it (e.g. move models into "
                "more families, one ConfigMap each)",
                ERROR,
                "size",
                ref,
                src,
            )
        )
    if size > ETCD_REQUEST_LIMIT:
        out.append(
            manifest_finding(
                "",
                f"object is {size:,} bytes as JSON; etcd's request limit is "
                f"{ETCD_REQUEST_LIMIT:,} bytes (1.5 MiB): the API server will reject "
                "it; move large data out (e.g. split the ConfigMap)",
                ERROR,
                "size",
                ref,
                src,
            )
        )
    if size > LAST_APPLIED_LIMIT:
        out.append(
            manifest_finding(
                "",
                f"object is {size:,} bytes as JSON (> {LAST_APPLIED_LIMIT:,}): "
                "client-side 'kubectl apply' stores it in the "
                "kubectl.kubernetes.io/last-applied-configuration annotation and "
                "will fail (annotations are limited to 256 KiB); use helm, "
                "'kubectl apply --server-side' or 'kubectl create/replace'",
                WARNING,
                "size",
                ref,
                src,
            )
        )
    return out
