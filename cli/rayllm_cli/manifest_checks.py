"""Offline validation of rendered manifests (``helm template`` output).

Public API (re-exported from the checks_* modules):

* ``split_manifests(text) -> list[Manifest]``: multi-doc YAML -> dicts that
  remember helm's ``# Source:`` template path and duplicate keys.
* ``validate_manifest(obj) -> list[Finding]``: strict KubeRay CRD check of a
  ray.io object (RayService / RayCluster).
* ``crd_validator(kind, version="v1")``: the cached strict Draft-07 validator.
* ``validate_builtin(objs) -> BuiltinResult``: built-in kinds via kubeconform or
  kubernetes-validate (``.backend`` says which ran).
* ``object_size_findings(obj) -> list[Finding]``: ConfigMap data / etcd /
  last-applied limits (``data_size(obj)``: bytes counted against the 1 MiB data limit).
* ``check_rendered(text_or_objs) -> Report``: all of the above.

CLI::

    helm template x charts/ray-llm | python -m rayllm_cli.manifest_checks -
    python -m rayllm_cli.manifest_checks rendered.yaml [--k8s-version 1.30] [--json]

Environment: RAYLLM_KUBERAY_CRDS (CRD directory), RAYLLM_K8S_VERSION,
RAYLLM_BUILTIN_BACKEND, RAYLLM_KUBECONFORM_SCHEMA_LOCATION, RAYLLM_TOOLS_DIR,
RAYLLM_CACHE_DIR (where the strict CRD schema is cached, default
~/.cache/ray-llm; ``off`` disables it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from .checks_builtin import (
    DATA_SIZE_LIMIT,
    DEFAULT_K8S_VERSION,
    ETCD_REQUEST_LIMIT,
    LAST_APPLIED_LIMIT,
    BuiltinResult,
    data_size,
    object_size_findings,
    validate_builtin,
)
from .checks_common import (
    ERROR,
    NOTICE,
    WARNING,
    Finding,
    Manifest,
    ManifestParseError,
    duplicate_key_findings,
    format_path,
    manifest_finding,
    metadata_findings,
    sort_findings,
    split_manifests,
)
from .checks_crd import (
    ENV_KUBERAY_CRDS,
    CrdNotFoundError,
    crd_validator,
    locate_kuberay_crds,
    strict_schema,
    validate_manifest,
)

__all__ = [
    "Finding",
    "Manifest",
    "ManifestParseError",
    "CrdNotFoundError",
    "BuiltinResult",
    "Report",
    "split_manifests",
    "validate_manifest",
    "crd_validator",
    "strict_schema",
    "locate_kuberay_crds",
    "validate_builtin",
    "object_size_findings",
    "metadata_findings",
    "duplicate_key_findings",
    "format_path",
    "check_rendered",
    "DEFAULT_K8S_VERSION",
    "ETCD_REQUEST_LIMIT",
    "LAST_APPLIED_LIMIT",
    "DATA_SIZE_LIMIT",
    "data_size",
    "ENV_KUBERAY_CRDS",
    "ERROR",
    "WARNING",
    "NOTICE",
]


@dataclass
class Report:
    objects: list[Manifest]
    findings: list[Finding] = field(default_factory=list)
    builtin_backend: str = ""
    kubernetes_version: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{len(self.objects)} objects; {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings; built-in kinds checked with "
            f"{self.builtin_backend} (Kubernetes {self.kubernetes_version})"
        )


def check_rendered(rendered: str | Iterable[Any], *, kubernetes_version: str | None = None) -> Report:
    """Run every offline check on rendered manifests (YAML text or objects)."""
    objs = (
        split_manifests(rendered)
        if isinstance(rendered, str)
        else [o if isinstance(o, Manifest) else Manifest(o, index=i) for i, o in enumerate(rendered)]
    )
    findings: list[Finding] = []
    for obj in objs:
        findings += duplicate_key_findings(obj)
        if str(obj.get("apiVersion", "")).startswith("ray.io/"):
            findings += validate_manifest(obj)
        findings += object_size_findings(obj)
    builtin = validate_builtin(objs, kubernetes_version=kubernetes_version)
    findings += [f for f in builtin.findings if not (f.severity == NOTICE and f.message.startswith("ray.io object"))]
    names: dict[tuple, Manifest] = {}
    for obj in objs:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        key = (
            obj.get("apiVersion", "").split("/")[0] if "/" in str(obj.get("apiVersion", "")) else "",
            obj.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
        )
        if key in names:
            findings.append(
                manifest_finding(
                    "metadata.name",
                    f"duplicate object: also rendered by {names[key].source or 'another document'}",
                    ERROR,
                    "stream",
                    f"{obj.get('kind')}/{meta.get('name')}",
                    obj.source,
                )
            )
        else:
            names[key] = obj
    return Report(objs, sort_findings(findings), builtin.backend, builtin.kubernetes_version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rayllm_cli.manifest_checks", description="Offline checks of rendered manifests"
    )
    parser.add_argument("file", help="rendered YAML ('-' for stdin)")
    parser.add_argument(
        "--k8s-version", default=None, help=f"Kubernetes version for built-in schemas (default {DEFAULT_K8S_VERSION})"
    )
    parser.add_argument("--json", action="store_true", help="print findings as JSON")
    parser.add_argument("--notices", action="store_true", help="also print notices")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        report = check_rendered(text, kubernetes_version=args.k8s_version)
    except (ManifestParseError, CrdNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = [f for f in report.findings if args.notices or f.severity != NOTICE]
    if args.json:
        print(
            json.dumps(
                {
                    "summary": report.summary(),
                    "ok": report.ok,
                    "builtin_backend": report.builtin_backend,
                    "findings": [asdict(f) for f in shown],
                },
                indent=2,
            )
        )
    else:
        for f in shown:
            print(f)
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
