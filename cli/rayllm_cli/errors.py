"""The CLI's one error type and its findings.

Exit codes (documented in ``ray-llm --help`` and the README):

* ``0`` valid (no error findings; with ``--strict`` no warnings either)
* ``1`` invalid input (error findings), or an internal error (one line, no traceback)
* ``2`` usage error: bad flags, a missing file, a bad ``--set`` expression
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"


@dataclass
class ValuesFinding:
    """One problem in the merged values (or in what they render to).

    ``path`` is the values path as written in values files
    (``tiers.small.gpusPerWorker``, ``models.x.engine_kwargs.dtype``),
    ``origin`` is ``file:line`` (or ``--set k=v``) of the value.
    ``value`` is already masked where it may hold a secret.
    """

    rule: str
    severity: str
    path: str
    message: str
    value: Any = None
    expected: str = ""
    fix: str = ""
    origin: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        head = f"{self.severity.upper():7} [{self.rule}] {self.path or '(values)'}"
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
