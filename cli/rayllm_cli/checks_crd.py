"""Strict offline validation of ray.io objects against KubeRay's CRD schemas.

The CRDs are test data, not part of the project. They are located via
``$RAYLLM_KUBERAY_CRDS`` (a directory holding ``ray.io_rayservices.yaml`` /
``ray.io_rayclusters.yaml``), else ``<repo root>/../shared/kuberay-crds``, else
``<tools dir>/kuberay-crds`` (what ``ci/fetch-kuberay-crds.sh`` downloads).

The CRD's ``openAPIV3Schema`` is turned into a JSON-Schema Draft-07 validator
that behaves like the API server with ``--validate=strict`` (server-side field
validation):

* unknown fields are errors: every object schema with ``properties`` and without
  ``x-kubernetes-preserve-unknown-fields: true`` gets ``additionalProperties:
  false`` (maps, i.e. schemas with an ``additionalProperties`` schema, keep it);
* properties that have a ``default`` are dropped from ``required`` (the API
  server defaults before validating);
* ``x-kubernetes-int-or-string`` accepts an integer or a string;
* ``format: int32/int64`` become range checks; ``nullable: true`` allows null;
* ``x-kubernetes-list-type: map`` rejects two items with the same key fields
  (after defaulting), ``set`` rejects duplicate items.

Not evaluated: ``x-kubernetes-validations`` (CEL rules) and string formats.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Sequence

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
    read_json_cache,
    source_of,
    user_cache_dir,
    write_json_cache,
)
from .helm_tools import repo_root, tools_dir

__all__ = [
    "ENV_KUBERAY_CRDS",
    "CRD_FILES",
    "CrdNotFoundError",
    "locate_kuberay_crds",
    "load_crd",
    "strict_schema",
    "crd_validator",
    "validate_manifest",
]

ENV_KUBERAY_CRDS = "RAYLLM_KUBERAY_CRDS"
GROUP = "ray.io"
CRD_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
}
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


class CrdNotFoundError(FileNotFoundError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- locating


def _candidate_dirs() -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_KUBERAY_CRDS)
    if env:
        out.append((f"${ENV_KUBERAY_CRDS}", Path(env).expanduser()))
    root = repo_root()
    if root is not None:
        out.append(("<repo>/../shared/kuberay-crds", root.parent / "shared" / "kuberay-crds"))
    out.append(("<tools dir>/kuberay-crds", tools_dir() / "kuberay-crds"))
    return out


def locate_kuberay_crds(kind: str = "RayService") -> Path:
    """Path of the CRD file for ``kind``; raises CrdNotFoundError saying where
    it looked and how to get the files."""
    if kind not in CRD_FILES:
        raise CrdNotFoundError(f"no KubeRay CRD known for kind {kind!r}; known: {', '.join(CRD_FILES)}")
    filename = CRD_FILES[kind]
    candidates = _candidate_dirs()
    env = os.environ.get(ENV_KUBERAY_CRDS)
    if env:
        # An explicit setting must not silently fall through to other copies.
        path = Path(env).expanduser() / filename
        if path.is_file():
            return path
        raise CrdNotFoundError(
            f"got: ${ENV_KUBERAY_CRDS}={env} without {filename}; expected: a directory "
            f"holding KubeRay's {filename}; do: point ${ENV_KUBERAY_CRDS} at such a "
            "directory or run ci/fetch-kuberay-crds.sh (needs network) and unset it"
        )
    for _, d in candidates:
        if (d / filename).is_file():
            return d / filename
    looked = "; ".join(f"{label} = {d}" for label, d in candidates)
    raise CrdNotFoundError(
        f"got: no {filename} (looked in: {looked}); expected: KubeRay's CRD files "
        f"(ray.io_rayservices.yaml, ray.io_rayclusters.yaml); do: run "
        "ci/fetch-kuberay-crds.sh on a machine with network (downloads the pinned KubeRay "
        f"release's CRDs into .tools/kuberay-crds/), or set ${ENV_KUBERAY_CRDS} to a "
        "directory holding them"
    )


def _yaml_load(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # ~10x faster on 1 MB
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


@functools.lru_cache(maxsize=None)
def load_crd(kind: str) -> tuple[Path, dict]:
    path = locate_kuberay_crds(kind)
    crd = _yaml_load(path)
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise CrdNotFoundError(f"{path} is not a CustomResourceDefinition")
    if crd.get("spec", {}).get("names", {}).get("kind") != kind:
        raise CrdNotFoundError(f"{path} defines {crd['spec']['names'].get('kind')}, not {kind}")
    return path, crd


def _version_schema(crd: dict, version: str) -> dict:
    for v in crd["spec"].get("versions", []):
        if v.get("name") == version:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if not isinstance(schema, dict):
                raise CrdNotFoundError(f"CRD version {version} has no openAPIV3Schema")
            return schema
    served = [v.get("name") for v in crd["spec"].get("versions", [])]
    raise CrdNotFoundError(f"CRD {crd['metadata']['name']} has no version {version} (has: {served})")


# --------------------------------------------------------------------------- schema transform


def _strictify(node: Any) -> Any:
    """Rewrite one structural-schema node (recursively, in place) into a strict
    Draft-07 schema. ``node`` must be a private copy."""
    if isinstance(node, list):
        for item in node:
            _strictify(item)
        return node
    if not isinstance(node, dict):
        return node

    # Children first. Only descend into schema-valued keywords (not into
    # "default"/"enum"/"example", which are data).
    props = node.get("properties")
    if isinstance(props, dict):
        for sub in props.values():
            _strictify(sub)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), (dict, list)):
            _strictify(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            _strictify(node[key])

    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        if "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]

    fmt = node.get("format")
    if node.get("type") == "integer" and fmt in _INT_RANGES:
        lo, hi = _INT_RANGES[fmt]
        node.setdefault("minimum", lo)
        node.setdefault("maximum", hi)

    if isinstance(props, dict) and "required" in node:
        req = [r for r in node["required"] if not (isinstance(props.get(r), dict) and "default" in props[r])]
        if req:
            node["required"] = req
        else:
            del node["required"]

    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if isinstance(props, dict) and not preserve and "additionalProperties" not in node:
        node["additionalProperties"] = False

    if node.get("nullable") is True:
        t = node.get("type")
        if isinstance(t, str):
            node["type"] = [t, "null"]
        elif isinstance(t, list) and "null" not in t:
            node["type"] = t + ["null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = node["enum"] + [None]
        if "anyOf" in node:
            node["anyOf"] = node["anyOf"] + [{"type": "null"}]

    if node.get("x-kubernetes-list-type") == "set":
        node["uniqueItems"] = True
    return node


_TOP_METADATA = {
    # ObjectMeta is validated by the API server itself (the CRD only says
    # "type: object"); metadata_findings() does the detailed checks.
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _schema_cache_file(kind: str, version: str) -> Path | None:
    """Where the strict schema built from the CRD file's current bytes is cached, or
    None when caching is off (``$RAYLLM_CACHE_DIR`` = ``off``) or impossible.

    Parsing the ~1 MB CRD YAML costs more than everything else ``ray-llm lint``
    does on a small release; the key is a hash of the CRD bytes and of this module
    (the transform), so an edited CRD or a new transform never reads a stale entry.
    """
    import hashlib
    import sys

    base = user_cache_dir("crd-schemas")
    if base is None:
        return None
    try:
        crd_bytes = locate_kuberay_crds(kind).read_bytes()
        digest = hashlib.sha256(crd_bytes)
        digest.update(Path(__file__).read_bytes())
    except OSError:
        return None
    digest.update(f"\0{kind}\0{version}\0{sys.version_info[:2]}".encode())
    return base / f"{kind.lower()}-{version}-{digest.hexdigest()[:32]}.json"


def strict_schema(kind: str = "RayService", version: str = "v1") -> dict:
    """The strict Draft-07 schema for ``ray.io/<version>`` ``kind`` (cached on disk,
    see :func:`_schema_cache_file`)."""
    cache = _schema_cache_file(kind, version)
    schema = read_json_cache(cache)
    if schema is None:
        schema = _build_strict_schema(kind, version)
        write_json_cache(cache, schema)
    return schema


def _build_strict_schema(kind: str, version: str) -> dict:
    _, crd = load_crd(kind)
    schema = _strictify(copy.deepcopy(_version_schema(crd, version)))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [f"{GROUP}/{version}"]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = copy.deepcopy(_TOP_METADATA)
    req = set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"}
    schema["required"] = sorted(req)
    # status is written by the operator; a chart must not render it.
    props.pop("status", None)
    schema["additionalProperties"] = False
    return schema


def _list_map_keys(
    validator: Any, keys: Sequence[str], instance: Any, schema: Dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """x-kubernetes-list-type: map -> items must be unique by their key fields
    (missing key fields take the item schema's default, as the API server
    defaults before validating)."""
    if schema.get("x-kubernetes-list-type") != "map" or not validator.is_type(instance, "array"):
        return
    item_props = (schema.get("items") or {}).get("properties") or {}
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(repr(item.get(k, (item_props.get(k) or {}).get("default"))) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={item.get(k, (item_props.get(k) or {}).get('default'))!r}" for k in keys)
            yield jsonschema.ValidationError(
                f"duplicate entry ({shown}) at [{i}] and [{seen[key]}]: list items must be unique by {list(keys)}",
                path=[i],
            )
        else:
            seen[key] = i


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
)


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str = "RayService", version: str = "v1") -> jsonschema.protocols.Validator:
    """Compiled (cached per process) strict validator for ray.io/<version> kind."""
    schema = strict_schema(kind, version)
    return _StrictValidator(schema)


# --------------------------------------------------------------------------- findings


def _errors_to_findings(errors: Iterable[jsonschema.ValidationError], obj: Any) -> list[Finding]:
    ref, src = object_ref(obj), source_of(obj)
    out: list[Finding] = []
    for err in errors:
        base = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = list((err.schema.get("properties") or {}).keys())
            extras = [k for k in err.instance if k not in known]
            for key in extras:
                hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                msg = f"unknown field {key!r}"
                if hint:
                    msg += f" (did you mean {hint[0]!r}?)"
                out.append(manifest_finding(format_path(base + [key]), msg, ERROR, "crd", ref, src))
            continue
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else ""
            path = format_path(base + ([missing] if missing else []))
            out.append(manifest_finding(path, f"required field {missing!r} is missing", ERROR, "crd", ref, src))
            continue
        if err.validator == "anyOf" and err.schema.get("x-kubernetes-int-or-string"):
            msg = f"{err.instance!r} must be an integer or a string"
        elif err.validator == "type":
            msg = f"{err.instance!r} is of type {type(err.instance).__name__}, expected {err.validator_value}"
        elif err.validator == "pattern" and err.validator_value == _QUANTITY_PATTERN:
            msg = f"{err.instance!r} is not a valid Kubernetes quantity (e.g. 500m, 2, 1.5, 16Gi, 100M)"
        elif err.validator == "pattern":
            msg = f"{err.instance!r} does not match {err.validator_value!r}"
        else:
            msg = err.message
        out.append(manifest_finding(format_path(base), msg, ERROR, "crd", ref, src))
    return out


def _prune_nulls(value: Any, schema: Any, path: list, pruned: list[list]) -> Any:
    """Copy of ``value`` without ``null`` object fields / map values whose schema
    is not ``nullable`` -- the API server prunes those before defaulting and
    validation (so they are accepted, and silently dropped)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            props = {}
        addl = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k, addl if isinstance(addl, dict) else None)
            if v is None and isinstance(sub, dict) and sub.get("nullable") is not True:
                pruned.append(path + [k])
                continue
            out[k] = _prune_nulls(v, sub, path + [k], pruned)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_nulls(v, schema["items"], path + [i], pruned) for i, v in enumerate(value)]
    return value


def validate_manifest(obj: Any) -> list[Finding]:
    """Strictly validate one ray.io object (RayService/RayCluster) against the
    KubeRay CRD, plus ObjectMeta checks. Non-ray.io objects get one notice
    (use checks_builtin.validate_builtin for those). Raises CrdNotFoundError
    when the CRD files can't be found."""
    ref, src = object_ref(obj), source_of(obj)
    if not isinstance(obj, dict):
        return [manifest_finding("", "a Kubernetes object must be a mapping", ERROR, "crd", ref, src)]
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    group, _, version = str(api_version or "").rpartition("/")
    if group != GROUP:
        return [
            manifest_finding(
                "",
                f"not a {GROUP} object ({api_version}); checked by validate_builtin instead",
                NOTICE,
                "crd",
                ref,
                src,
            )
        ]
    if kind not in CRD_FILES:
        return [manifest_finding("kind", f"unknown {GROUP} kind {kind!r}", ERROR, "crd", ref, src)]
    out: list[Finding] = []
    if version != "v1":
        out.append(
            manifest_finding("apiVersion", f"{api_version} is deprecated; use {GROUP}/v1", WARNING, "crd", ref, src)
        )
    try:
        validator = crd_validator(kind, version)
    except CrdNotFoundError as exc:
        if kind == "RayJob" or "has no version" in exc.message:
            return out + [manifest_finding("", f"cannot check: {exc.message}", WARNING, "crd", ref, src)]
        raise
    pruned_paths: list[list] = []
    pruned = _prune_nulls(dict(obj), validator.schema, [], pruned_paths)
    for p in pruned_paths:
        out.append(
            manifest_finding(
                format_path(p),
                "null value: the API server prunes it (the field is dropped, as if not set); omit it in the template",
                WARNING,
                "crd",
                ref,
                src,
            )
        )
    out += _errors_to_findings(
        sorted(validator.iter_errors(pruned), key=lambda e: list(map(str, e.absolute_path))), obj
    )
    # Detailed ObjectMeta checks (name format, label keys/values...). Skip the
    # ones the schema already reported on the same path.
    seen = {f.path for f in out}
    out += [f for f in metadata_findings(obj) if f.path not in seen]
    return out
