"""Shared pieces of the offline manifest checks: the Finding type, JSON paths,
splitting `helm template` output, ObjectMeta checks."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from . import yaml_helm
from .errors import ERROR, NOTICE, WARNING, Finding, format_path

__all__ = [
    "Finding",
    "manifest_finding",
    "Manifest",
    "ManifestParseError",
    "format_path",
    "object_ref",
    "split_manifests",
    "metadata_findings",
    "duplicate_key_findings",
]


def manifest_finding(
    path: str, message: str, severity: str = ERROR, check: str = "", obj: str = "", source: str | None = None
) -> Finding:
    """A finding about one rendered object: ``path`` inside it, ``check`` that found it,
    ``obj`` its ``Kind/name`` and ``source`` the template from helm's ``# Source:`` comment."""
    return Finding(rule=check, severity=severity, path=path, message=message, obj=obj, origin=source or "")


class Manifest(dict):
    """A plain dict (the parsed document) that also remembers where it came
    from: ``source`` (helm's ``# Source:`` path), ``index`` (document number in
    the stream), ``duplicate_keys`` ([(line, key), ...] found while parsing)."""

    source: str | None
    index: int
    duplicate_keys: list[tuple[int, str]]

    def __init__(
        self, data: dict, source: str | None = None, index: int = 0, duplicate_keys: list[tuple[int, str]] | None = None
    ):
        super().__init__(data)
        self.source = source
        self.index = index
        self.duplicate_keys = list(duplicate_keys or [])


class ManifestParseError(ValueError):
    pass


# --------------------------------------------------------------------------- paths


def object_ref(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "<not an object>"
    kind = obj.get("kind") or "<no kind>"
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name") or "<no name>"
    return f"{kind}/{name}"


def source_of(obj: Any) -> str | None:
    return getattr(obj, "source", None)


# --------------------------------------------------------------------------- YAML splitting


class _DupKeyTracking:
    """Loader mixin that records duplicate mapping keys instead of silently
    keeping the last one (the API server's strict decoding rejects them)."""

    def __init__(self, stream: str):
        super().__init__(stream)  # type: ignore[call-arg]  # a mixin: the loader class takes the stream
        self.duplicates: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    # A mixin: the loader class it is mixed into constructs the objects.
                    key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
                    hash(key)
                except Exception:  # unhashable key: let the base class complain
                    continue
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, str(key)))
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]  # the loader's, as above


class _ManifestLimits(yaml_helm.LimitsMixin):
    """yaml_helm's depth / size limits (no libyaml crash on absurd nesting); objects nest a
    few levels deeper than the values they are rendered from."""

    max_depth = yaml_helm.MAX_DEPTH + 30


class _DupKeyLoader(_DupKeyTracking, _ManifestLimits, yaml.SafeLoader):
    """The reference (pure-Python) parser: its error messages are the ones we show."""


# libyaml's parser: same nodes and marks, ~10x faster on a large rendered stream.
_FastDupKeyLoader = (
    type("_FastDupKeyLoader", (_DupKeyTracking, _ManifestLimits, yaml.CSafeLoader), {})
    if hasattr(yaml, "CSafeLoader")
    else None
)


def _guarded_data(loader: Any, chunk: str) -> Any:
    """``get_single_data`` that refuses alias bombs before constructing anything."""
    node = loader.get_single_node()
    if node is None:
        return None
    if "*" in chunk:
        yaml_helm.check_aliases(node)
    return loader.construct_document(node)


def _load_document(chunk: str) -> tuple[Any, list[tuple[int, str]]]:
    """(data, duplicate keys) of one document; invalid YAML raises the reference
    parser's yaml.YAMLError."""
    if _FastDupKeyLoader is not None:
        loader = _FastDupKeyLoader(chunk)
        try:
            return _guarded_data(loader, chunk), loader.duplicates
        except yaml_helm.YAMLLimitError:
            raise  # the reference parser would say the same, slower
        except yaml.YAMLError:
            pass  # re-parse below for the reference message
        finally:
            loader.dispose()
    loader = _DupKeyLoader(chunk)
    try:
        return _guarded_data(loader, chunk), loader.duplicates
    except RecursionError:  # the pure-Python constructor on very deep (but allowed) nesting
        raise yaml_helm.YAMLLimitError("depth", "the document nests too deeply to read") from None
    finally:
        loader.dispose()


_DOC_SEP = re.compile(r"^---(?:[ \t].*)?$", re.MULTILINE)
_SOURCE = re.compile(r"^#\s*Source:\s*(\S.*?)\s*$", re.MULTILINE)


def split_manifests(text: str) -> list[Manifest]:
    """Split multi-document YAML (``helm template`` output) into objects.

    Empty documents (comments only, or ``null``) are skipped. Each result is a
    :class:`Manifest` (a dict) carrying ``source`` from the ``# Source:``
    comment helm writes at the top of each document, and ``duplicate_keys``.
    Raises ManifestParseError (naming the source and line) on invalid YAML or a
    document that is not a mapping.
    """
    out: list[Manifest] = []
    # Split on column-0 document markers ourselves so that each document keeps
    # its own "# Source:" comment (the YAML parser drops comments). A '---' at
    # column 0 also ends a block scalar in YAML, so this agrees with the parser.
    chunks = _DOC_SEP.split(text)
    line_offset = 0
    for index, chunk in enumerate(chunks):
        start_line = line_offset
        line_offset += chunk.count("\n")  # the separator line ends the previous chunk
        m = _SOURCE.search(chunk)
        source = m.group(1) if m else None
        try:
            data, duplicates = _load_document(chunk)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {start_line + mark.line + 1}" if mark is not None else ""
            raise ManifestParseError(f"{source or f'document {index}'}:{line}: invalid YAML: {exc}") from exc
        if data is None or data == {}:
            continue
        if not isinstance(data, dict):
            raise ManifestParseError(
                f"{source or f'document {index}'}: expected a mapping (a Kubernetes object), got {type(data).__name__}"
            )
        dups = [(start_line + line, key) for line, key in duplicates]
        out.append(Manifest(data, source=source, index=len(out), duplicate_keys=dups))
    return out


def duplicate_key_findings(obj: Any) -> list[Finding]:
    return [
        manifest_finding(
            path="",
            message=(
                f"duplicate key {key!r} at line {line} of the rendered stream: the "
                "API server rejects duplicate fields (strict decoding); PyYAML/kubectl "
                "client-side would silently keep the last one"
            ),
            check="yaml",
            obj=object_ref(obj),
            source=source_of(obj),
        )
        for line, key in getattr(obj, "duplicate_keys", [])
    ]


# --------------------------------------------------------------------------- ObjectMeta

# k8s.io/apimachinery validation
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_OBJECTMETA_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB


def _qualified_name_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            return "prefix must be a DNS-1123 subdomain (lowercase, <= 253 chars)"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return "name part must be <= 63 chars of [A-Za-z0-9-_.], starting and ending alphanumeric"
    return None


def metadata_findings(obj: Any, *, check: str = "metadata") -> list[Finding]:
    """apiVersion/kind present; metadata.name present and a DNS-1123
    subdomain; labels/annotations are string maps with valid keys (and label
    values valid); no unknown ObjectMeta fields; annotations <= 256 KiB."""
    ref, src = object_ref(obj), source_of(obj)

    def f(path: str, msg: str, severity: str = ERROR) -> Finding:
        return manifest_finding(path, msg, severity, check, ref, src)

    if not isinstance(obj, dict):
        return [f("", "a Kubernetes object must be a mapping")]
    out: list[Finding] = []
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj.get(key):
            out.append(f(key, f"required field {key!r} is missing or not a non-empty string"))
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        out.append(f("metadata", "required field 'metadata' is missing or not a mapping"))
        return out
    for key in sorted(set(meta) - _OBJECTMETA_FIELDS):
        out.append(f(format_path(["metadata", key]), f"unknown field {key!r} in ObjectMeta"))
    name = meta.get("name")
    if name is None:
        out.append(f("metadata.name", "required field 'name' is missing"))
    elif not isinstance(name, str):
        out.append(f("metadata.name", f"must be a string, got {type(name).__name__}"))
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        out.append(
            f(
                "metadata.name",
                f"{name!r} is not a valid DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', <= 253 chars)",
            )
        )
    ns = meta.get("namespace")
    if ns is not None and (
        not isinstance(ns, str) or len(ns) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ns)
    ):
        out.append(f("metadata.namespace", f"{ns!r} is not a valid DNS-1123 label"))
    for kind in ("labels", "annotations"):
        mp = meta.get(kind)
        if mp is None:
            continue
        if not isinstance(mp, dict):
            out.append(f(format_path(["metadata", kind]), "must be a map of string to string"))
            continue
        total = 0
        for k, v in mp.items():
            p = format_path(["metadata", kind, str(k)])
            if not isinstance(k, str):
                out.append(f(p, f"key must be a string, got {type(k).__name__}"))
                continue
            problem = _qualified_name_problem(k)
            if problem:
                out.append(f(p, f"invalid {kind[:-1]} key {k!r}: {problem}"))
            if not isinstance(v, str):
                out.append(f(p, f"value must be a string, got {type(v).__name__} {v!r} (quote it in the template)"))
                continue
            total += len(k) + len(v)
            if kind == "labels" and v and (len(v) > 63 or not _LABEL_NAME.match(v)):
                out.append(
                    f(
                        p,
                        f"invalid label value {v!r}: must be <= 63 chars of "
                        "[A-Za-z0-9-_.], starting and ending alphanumeric",
                    )
                )
        if kind == "annotations" and total > TOTAL_ANNOTATION_SIZE_LIMIT:
            out.append(
                f(
                    "metadata.annotations",
                    f"annotations total {total} bytes; the API server allows at most {TOTAL_ANNOTATION_SIZE_LIMIT}",
                )
            )
    return out


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    order = {ERROR: 0, WARNING: 1, NOTICE: 2}
    return sorted(findings, key=lambda x: (order.get(x.severity, 3), x.origin, x.obj, x.path))


# --------------------------------------------------------------------------- on-disk cache

ENV_CACHE_DIR = "RAYLLM_CACHE_DIR"


def env_says_off(name: str) -> bool:
    """Whether the environment variable turns a feature off (off, 0, false or no, any case)."""
    return os.environ.get(name, "").lower() in ("0", "off", "false", "no")


def user_cache_dir(*parts: str) -> Optional[Path]:
    """``$RAYLLM_CACHE_DIR`` (else ``$XDG_CACHE_HOME/ray-llm``, else ``~/.cache/ray-llm``) joined
    with ``parts``; None when the variable says ``off`` (or 0/false/no)."""
    if env_says_off(ENV_CACHE_DIR):
        return None
    env = os.environ.get(ENV_CACHE_DIR, "")
    base = (
        Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ray-llm"
    )
    return base.joinpath(*parts)


def read_json_cache(path: Optional[Path]) -> Any:
    """The JSON stored at path, or None when there is none (or it is unreadable)."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_cache(path: Optional[Path], data: Any) -> None:
    """Store data at path atomically (a reader never sees half a file); a cache that
    cannot be written only costs time, so failures are ignored."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        try:
            tmp.unlink()
        except OSError:
            pass
