"""``ray-llm validate``: Helm's merge, the Pydantic values models, the cross-field rules."""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from pydantic import ValidationError


@contextmanager
def _quick_build() -> Iterator[None]:
    """Building the values models (and validating a big merged tree) allocates many
    objects and no garbage cycles worth collecting midway; pydantic's plugin discovery
    reads the metadata of every installed distribution (hundreds beside Ray and vLLM).
    Both cost ~10 ms per CLI run: skip them here, restore both afterwards."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    had = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    if had is None:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:
        if had is None:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
        if gc_was_enabled:
            gc.enable()


with _quick_build():
    from rayllm_schemas.values import ChartValues

# After the models are built: these import them too, and must find them built quickly.
from .errors import ERROR, NOTICE, WARNING, Finding, RayLLMError, format_path  # noqa: E402
from .merge import Merged, merge_values  # noqa: E402
from .rules import Context, deprecated_key_finding, run_rules  # noqa: E402
from .rules.context import get, redact  # noqa: E402


@dataclass
class Result:
    findings: List[Finding] = field(default_factory=list)
    merged: Optional[Merged] = None
    model: Optional[ChartValues] = None
    strict: bool = False

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == ERROR or (self.strict and f.severity == WARNING)]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors


def _split_message(msg: str) -> Tuple[str, str, str]:
    """Our models write "got X; expected Y; do Z": split into message / expected / fix."""
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if "; expected " in msg:
        head, _, rest = msg.partition("; expected ")
        expected, _, fix = rest.partition("; ")
        return head, expected, fix
    return msg, "", ""


_TYPE_HINTS = {
    "extra_forbidden": "a key the chart knows (unknown keys would be silently ignored)",
    "missing": "this required key",
}


def schema_findings(values: dict, ctx: Context) -> Tuple[List[Finding], Optional[ChartValues]]:
    try:
        with _quick_build():
            return [], ChartValues.model_validate(values)
    except ValidationError as exc:
        out: List[Finding] = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            # union branches add type names to the location (e.g. "int", "str"); drop them
            loc = tuple(
                p
                for p in loc
                if not (
                    isinstance(p, str)
                    and (
                        p in {"int", "float", "str", "literal['auto']"}
                        or p.startswith(("function-", "literal[", "dict[", "list["))
                    )
                )
            )
            etype = err.get("type", "")
            if etype == "extra_forbidden":
                dep = deprecated_key_finding(ctx, loc)
                if dep:
                    out.append(dep)
                    continue
            msg = err.get("msg", "")
            message, expected, fix = _split_message(msg)
            if etype == "extra_forbidden":
                import difflib

                known = _known_keys(loc[:-1])
                close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
                message = f"unknown key {loc[-1]!r}"
                expected = "one of: " + ", ".join(known[:30]) if known else _TYPE_HINTS[etype]
                fix = f"did you mean {close[0]!r}?" if close else "remove it or fix its spelling"
            elif etype == "missing":
                message, expected, fix = "required key is missing", _TYPE_HINTS[etype], f"add `{loc[-1]}`"
            value = None if etype == "missing" else redact(get(values, loc), loc)
            if not fix:
                expected, fix = _schema_hint(etype, msg, expected, get(values, loc), loc)
            out.append(Finding("schema", ERROR, _fmt(loc), message, value, expected, fix, ctx.origin(loc)))
        return out, None


def _schema_hint(etype: str, msg: str, expected: str, got: Any, loc: Sequence[Any]) -> Tuple[str, str]:
    """(expected, fix) for Pydantic's own messages ("Input should be ..."), which name neither."""
    key = f"`{loc[-1]}`" if loc else "the value"
    if not expected:
        expected = msg
        for prefix in ("Input should be ", "String should ", "Value should "):
            if msg.startswith(prefix):
                expected = msg[len(prefix) :]
                break
    if etype == "string_type" and isinstance(got, (bool, int, float)):
        return expected, (
            f"quote {key}'s value (e.g. 'no', '1.10') so YAML reads it as text; unquoted "
            "yes/no/on/off/y/n are booleans and digits are numbers"
        )
    if etype in ("dict_type", "model_type", "model_attributes_type"):
        return "a mapping (key: value)", f"write {key} as a mapping of keys, not a {type(got).__name__}"
    if etype == "list_type":
        return "a list", f"write {key} as a YAML list (- item)"
    if etype in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return "a whole number (in range)", f"set {key} to a whole number"
    if etype in ("float_type", "float_parsing", "finite_number"):
        return "a finite number", f"set {key} to a number"
    if etype in ("bool_type", "bool_parsing"):
        return "true or false", f"set {key} to true or false"
    if etype == "literal_error":
        return expected, f"set {key} to one of those values"
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return expected, f"set {key} to a number {expected}"
    if etype == "string_pattern_mismatch":
        return expected.replace("match pattern", "a string matching"), f"fix the format of {key}"
    if etype in ("string_too_short", "string_too_long"):
        return expected.replace("have ", ""), f"set {key} to a string of that length"
    return expected, f"fix {key}"


def _fmt(loc: Sequence[Any]) -> str:
    return format_path(loc)


def _unwrap(ann: Any) -> Any:
    from typing import Union, get_args, get_origin

    from pydantic import BaseModel

    origin = get_origin(ann)
    if origin is None:
        return ann
    args = [a for a in get_args(ann) if a is not type(None)]
    if origin is Union:
        for a in args:
            u = _unwrap(a)
            if isinstance(u, type) and issubclass(u, BaseModel):
                return u
        return args[0] if args else ann
    if origin in (dict,):
        return _DictOf(_unwrap(args[-1])) if args else ann
    if origin in (list,):
        return _ListOf(_unwrap(args[0])) if args else ann
    return ann


class _DictOf:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


class _ListOf:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


def _known_keys(loc: Sequence[Any]) -> List[str]:
    """Keys (aliases) the model at ``loc`` accepts, for did-you-mean."""
    from pydantic import BaseModel

    model: Any = ChartValues
    for part in loc:
        if isinstance(model, (_DictOf, _ListOf)):
            model = model.inner
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        fld = next((f for n, f in model.model_fields.items() if (f.alias or n) == part or n == part), None)
        if fld is None:
            return []
        model = _unwrap(fld.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _dedupe(schema: List[Finding], rules: List[Finding]) -> List[Finding]:
    """Drop schema value errors that a rule reports on the same subtree with a better message."""
    rule_paths = [r.path for r in rules if r.severity == ERROR]
    out = []
    for f in schema:
        if (
            f.rule == "schema"
            and f.path
            and any(rp == f.path or rp.startswith(f.path + ".") for rp in rule_paths)
            and not f.message.startswith(("unknown key", "required key"))
        ):
            continue
        out.append(f)
    return out


def validate_values(
    files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    strict: bool = False,
    chart: Optional[Path] = None,
    release: Optional[str] = None,
) -> Result:
    """Merge, check the schema, run the rules. Usage errors raise UsageError; unreadable input becomes findings.
    ``release``: the Helm release name, when known (it names the RayService)."""
    try:
        merged = merge_values(files, sets, set_strings, chart=chart)
    except RayLLMError as exc:
        if exc.exit_code != 1:
            raise
        return Result(
            findings=exc.findings or [Finding("yaml", ERROR, exc.path, exc.message, None, exc.expected, exc.fix)],
            strict=strict,
        )
    ctx = Context(merged.values, merged, release)
    schema, model = schema_findings(merged.values, ctx)
    rule_findings = run_rules(ctx)
    findings = list(merged.problems) + _dedupe(schema, rule_findings) + rule_findings
    order = {ERROR: 0, WARNING: 1, NOTICE: 2}
    findings.sort(key=lambda f: (order.get(f.severity, 3), f.path, f.rule))
    return Result(findings=findings, merged=merged, model=model, strict=strict)
