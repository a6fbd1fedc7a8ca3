"""A literal-credential scanner for rendered manifests.

It walks every rendered document, and every string in it that is itself YAML
or JSON (the RayService's serveConfigV2, the model files and runtime sources
in ConfigMaps, the Grafana dashboard), looking for:

- known token formats anywhere (`FORMATS`);
- long, high-entropy strings in the values of keys named like a credential
  (`SECRET_KEY_NAME`), which catches the formats nobody listed.

A hit inside a Secret *reference* (`secretKeyRef`, `secretRef`, a `secretName`,
`imagePullSecrets`) names a Secret and is recorded as a reference, not a
finding. Findings never carry the matched text: only where it is and what it
looks like, so a failing test cannot leak what it found.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Sequence, Tuple

import yaml

from rayllm_schemas.secret_patterns import TOKEN_FORMATS

# The token formats the chart and `ray-llm validate` refuse (one list, rayllm_schemas.secret_patterns),
# named without their article ("a GitHub token" -> "GitHub token").
FORMATS: List[Tuple[str, "re.Pattern[str]"]] = [
    (re.sub(r"^(a|an) ", "", what), re.compile(pattern)) for what, pattern in TOKEN_FORMATS
]

# Keys whose values are credentials when they hold a literal.
# A bare `key` is not one: in Kubernetes it names things (configMap items,
# tolerations, secretKeyRef).
SECRET_KEY_NAME = re.compile(
    r"(?i)(token|passw(?:or)?d|secret|credential|auth|api[_-]?keys?|access[_-]?key|private[_-]?key"
    r"|signing[_-]?key|encryption[_-]?key)"
)
ENTROPY_MIN_LENGTH = 16
# Bits per character: random base62/base64 strings of 16+ characters score
# 3.7-4.5; words, paths and identifiers stay below 3.3.
ENTROPY_THRESHOLD = 3.5

# Path components that make a string a Secret reference rather than a value.
REFERENCE_CONTAINERS = {"secretKeyRef", "secretRef", "imagePullSecrets"}
REFERENCE_KEYS = {"secretName"}


def shannon_entropy(text: str) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    """A single long token with high entropy (not a path, URL, sentence or reference)."""
    if len(value) < ENTROPY_MIN_LENGTH or any(c.isspace() for c in value):
        return False
    if value.startswith(("/", "./", "$(", "${")) or "://" in value:
        return False
    return shannon_entropy(value) >= ENTROPY_THRESHOLD


def mask(value: str) -> str:
    """What a report may show of a matched value: its length only."""
    return f"<{len(value)} chars>"


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    length: int

    def __str__(self) -> str:
        return f"{self.where}: looks like a {self.kind} ({self.length} chars, value withheld)"


@dataclass
class ScanReport:
    findings: List[Finding] = field(default_factory=list)
    # Every string that names a Secret (where it is), and hits inside them.
    references: List[str] = field(default_factory=list)
    exempt: List[Finding] = field(default_factory=list)
    documents: int = 0
    configmap_entries: int = 0
    nested_documents: int = 0
    strings: int = 0

    def merge(self, other: "ScanReport") -> None:
        self.findings += other.findings
        self.references += other.references
        self.exempt += other.exempt
        self.documents += other.documents
        self.configmap_entries += other.configmap_entries
        self.nested_documents += other.nested_documents
        self.strings += other.strings


def _doc_id(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def _is_reference(path: Sequence[Any]) -> bool:
    keys = [p for p in path if isinstance(p, str)]
    return any(k in REFERENCE_CONTAINERS for k in keys) or (bool(keys) and keys[-1] in REFERENCE_KEYS)


def _fmt(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _nested(text: str) -> Any:
    """The structure inside a string that is a YAML or JSON document, else None."""
    if "\n" not in text and not text.lstrip().startswith(("{", "[")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    return data if isinstance(data, (dict, list)) else None


def _key_name(path: Sequence[Any], parent: Any) -> str:
    """The key a value sits under; for EnvVar-like {name, value} the env name."""
    keys = [p for p in path if isinstance(p, str)]
    if not keys:
        return ""
    if keys[-1] == "value" and isinstance(parent, dict) and isinstance(parent.get("name"), str):
        return parent["name"]
    return keys[-1]


def _walk(node: Any, path: Tuple[Any, ...], parent: Any, report: ScanReport, where: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _walk(v, path + (str(k),), node, report, where)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, path + (i,), node, report, where)
    elif isinstance(node, str):
        report.strings += 1
        _scan_string(node, path, parent, report, where)


def _scan_string(value: str, path: Tuple[Any, ...], parent: Any, report: ScanReport, where: str) -> None:
    location = f"{where}:{_fmt(path)}"
    hits = [Finding(location, kind, len(m.group(0))) for kind, pattern in FORMATS for m in pattern.finditer(value)]
    key = _key_name(path, parent)
    if not hits and key and SECRET_KEY_NAME.search(key) and looks_random(value):
        hits.append(Finding(location, f"high-entropy value of {key!r}", len(value)))
    if _is_reference(path):
        report.references.append(location)
        report.exempt.extend(hits)
    else:
        report.findings.extend(hits)
    inner = _nested(value)
    if inner is not None:
        report.nested_documents += 1
        _walk(inner, path + ("<parsed>",), None, report, where)


def scan_documents(docs: Sequence[dict]) -> ScanReport:
    report = ScanReport()
    for doc in docs:
        report.documents += 1
        if doc.get("kind") == "ConfigMap":
            report.configmap_entries += len(doc.get("data") or {}) + len(doc.get("binaryData") or {})
        _walk(doc, (), None, report, _doc_id(doc))
    return report


def iter_format_names() -> Iterator[str]:
    return (kind for kind, _ in FORMATS)
