"""The CLI's one error type and its findings.

Exit codes (documented in ``ray-llm --help`` and the README):

* ``0`` valid (no error findings; with ``--strict`` no warnings either)
* ``1`` invalid input (error findings), or an internal error (one line, no traceback)
* ``2`` usage error: bad flags, a missing file, a bad ``--set`` expression
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"


MAX_MESSAGE_CHARS = 2000
MAX_VALUE_CHARS = 500


def bounded(value: Any) -> Any:
    """``value`` itself when small; else a short text of its start (and how big it was)."""
    if isinstance(value, str):
        if len(value) <= MAX_VALUE_CHARS:
            return value
        return value[:MAX_VALUE_CHARS] + f"... ({len(value):,} characters)"
    if isinstance(value, (dict, list, tuple)):
        import itertools
        import json

        if len(value) <= 20:
            try:
                text = json.dumps(value, default=str)
            except (ValueError, RecursionError):
                text = None
            if text is not None and len(text) <= MAX_VALUE_CHARS:
                return value
        head = dict(itertools.islice(value.items(), 5)) if isinstance(value, dict) else list(value[:5])
        try:
            text = json.dumps(head, default=str)
        except (ValueError, RecursionError):
            text = repr(type(value).__name__)
        kind = "keys" if isinstance(value, dict) else "items"
        return f"{text[:MAX_VALUE_CHARS]}... ({len(value):,} {kind})"
    return value


@dataclass
class Finding:
    """One problem (or notice) in the merged values or in what they render to: the one finding
    type of ``validate``, ``lint`` and the manifest checks.

    ``rule``      what found it: a rule id (``RL003``), ``schema``, or a manifest check
                  (``crd``, ``builtin:kubernetes-validate``, ``metadata``, ``size``, ``ray:LLMConfig``)
    ``path``      the values path as written in values files (``tiers.small.gpusPerWorker``), or
                  the JSON path inside the rendered object ``obj`` (``spec.rayClusterConfig...``)
    ``obj``       ``Kind/name`` of the rendered object, for manifest findings; empty for values
    ``origin``    ``file:line`` (or ``--set k=v``) of the value, or the template of the object
    ``value``     already masked where it may hold a secret
    """

    rule: str
    severity: str
    path: str
    message: str
    value: Any = None
    expected: str = ""
    fix: str = ""
    origin: str = ""
    obj: str = ""

    def __post_init__(self) -> None:
        # a finding is read by a person: a 500,000-item list or a 4 MiB string in it helps nobody
        # and makes the output (and the JSON encoder) as big as the input
        self.value = bounded(self.value)
        if isinstance(self.message, str) and len(self.message) > MAX_MESSAGE_CHARS:
            cut = len(self.message) - MAX_MESSAGE_CHARS
            self.message = self.message[:MAX_MESSAGE_CHARS] + f"... ({cut:,} more characters)"

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        who = f"{self.obj} " if self.obj else ""
        at = f"{self.path}: " if self.path else ""
        return f"{self.severity.upper()} {where}{who}{at}{self.message}"

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        where = " ".join(x for x in (self.obj, self.path) if x) or ("(object)" if self.obj else "(values)")
        head = f"{self.severity.upper():7} [{self.rule}] {where}"
        if self.origin:
            head += f"  ({self.origin})"
        lines = [head, f"    {self.message}"]
        if self.value is not None and self.value != "":
            shown = repr(self.value) if not isinstance(self.value, str) else self.value
            if len(shown) > 200:
                shown = shown[:197] + "..."
            lines.append(f"    got:      {shown}")
        if self.expected:
            lines.append(f"    expected: {self.expected}")
        if self.fix:
            lines.append(f"    fix:      {self.fix}")
        return "\n".join(lines)


@dataclass
class RayLLMError(Exception):
    """A problem the user can fix; never shown as a traceback.

    ``exit_code`` 2 for usage errors (bad flags, missing files), 1 otherwise.
    """

    message: str
    path: str = ""
    value: Any = None
    expected: str = ""
    fix: str = ""
    exit_code: int = EXIT_INVALID
    findings: list = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.expected:
            text += f"; expected {self.expected}"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text


class UsageError(RayLLMError):
    def __init__(self, message: str, fix: str = "", path: str = "") -> None:
        super().__init__(message=message, fix=fix, path=path, exit_code=EXIT_USAGE)


def mask(value: Any) -> str:
    """Never print a secret: keep a hint of its shape only."""
    text = str(value)
    if len(text) <= 4:
        return "****"
    return text[:3] + "****" + f" ({len(text)} chars)"


def format_path(parts: Iterable[Any]) -> str:
    """The one path formatter: ``['tiers', 'small', 'env', 0]`` -> ``tiers.small.env[0]``; keys with
    other characters than letters, digits, ``_`` and ``-`` are bracket-quoted
    (``models["qwen2.5-0.5b"]``, ``metadata.labels["app.kubernetes.io/name"]``)."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif part != "" and all(c.isalnum() or c in "_-" for c in str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += '["' + str(part).replace('"', '\\"') + '"]'
    return out
