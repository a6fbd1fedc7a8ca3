"""Merge values exactly as Helm does, remembering where every value came from.

Order (Helm's ``helm template chart -f a.yaml -f b.yaml --set k=v``):

1. the user files merge into each other (``mergeMaps``): later files win, maps
   merge recursively, lists and scalars replace;
2. every ``--set``/``--set-string`` is parsed *into* that result (Helm's
   ``strvals.ParseInto``): ``a.b=c``, ``a[0].b=c``, ``a={x,y}``, comma-separated
   pairs, ``\\`` escapes, type inference (ints without a leading zero,
   ``true``/``false``, ``null``; floats stay strings);
3. the chart's ``values.yaml`` is coalesced underneath: a user ``null`` deletes
   the chart's default key; maps merge; anything else in the user values wins.

(Helm 4 differs in one invisible way: a user ``null`` over a chart default
that is itself ``null`` stays as ``key: null``; 3.18 deletes it. Templates see
nil either way; we follow 3.18.)

Each source is loaded from the YAML node tree so every value keeps its
``file:line``; :meth:`Merged.origin` answers for any path in the result.
"""

from __future__ import annotations

import copy
import datetime
import gc
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from . import yaml_helm
from .errors import ERROR, WARNING, Finding, RayLLMError, UsageError, format_path

PathT = Tuple[Union[str, int], ...]

# origin kinds: a map merges with what is below it; anything else replaces it
MAP = "map"
OTHER = "other"


@dataclass
class Source:
    name: str  # file path or "--set"
    data: Dict[str, Any]
    origins: Dict[PathT, Tuple[str, str]] = field(default_factory=dict)  # path -> (origin, kind)


class _Loader(yaml_helm.HelmScalarsMixin, yaml.SafeLoader):
    """The reference parser: Helm's plain scalars (yaml_helm) and the depth/size limits."""


yaml_helm.install(_Loader)
# libyaml's parser builds the same node tree (same marks) ~10x faster; same mixin, same rules.
_FastLoader = (
    yaml_helm.install(type("_FastLoader", (yaml_helm.HelmScalarsMixin, yaml.CSafeLoader), {}))
    if hasattr(yaml, "CSafeLoader")
    else None
)


def _fast_loader() -> Any:
    """libyaml's parser builds the same node tree (same marks) ~10x faster than the
    pure-Python one; None when PyYAML lacks it or ``_Loader`` carries a customisation
    (constructor, resolver, override) that ``_FastLoader`` lacks: it must not be bypassed."""
    if _FastLoader is None or any(
        vars(_FastLoader).get(k) != v for k, v in vars(_Loader).items() if not k.startswith("__")
    ):
        return None
    return _FastLoader


def _key_str(value: Any) -> str:
    # sigs.k8s.io/yaml turns non-string keys into their JSON-ish text
    return yaml_helm.helm_key(value)


class YAMLInputRejected(RayLLMError):
    """Input refused for a reason that re-parsing cannot change (a limit, multiple documents)."""


def _yaml_error(exc: yaml.YAMLError, text: str, name: str) -> RayLLMError:
    """One clear finding for a document that cannot be read (syntax, limits, several documents)."""
    if isinstance(exc, yaml_helm.YAMLLimitError):
        line = exc.line or (yaml_helm.depth_line(text) if exc.kind == "depth" else None)
        where = f"{name}:{line}" if line else name
        expected, fix = {
            "depth": (
                f"at most {yaml_helm.MAX_DEPTH} levels of nesting (this chart reads ~12)",
                "flatten the values; deeper structures are generated garbage, not chart values",
            ),
            "nodes": (
                f"at most {yaml_helm.MAX_NODES:,} values in one file",
                "split the values over several -f files or remove generated bulk",
            ),
            "aliases": (
                "aliases that expand modestly (Helm refuses this file too: 'document contains excessive aliasing')",
                "write the repeated values out, or alias fewer nested copies",
            ),
            "recursive-alias": (
                "an alias that points to an earlier, complete value (Helm: 'anchor value contains itself')",
                "point the alias at another anchor",
            ),
        }[exc.kind]
        return YAMLInputRejected(
            message=f"{where}: {exc.message}",
            expected=expected,
            fix=fix,
            findings=[Finding("yaml", ERROR, "", exc.message, expected=expected, fix=fix, origin=where)],
        )
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        where = f"{name}:{line}"
        message = (
            f"a control character U+{exc.character:04X} at line {line}, column {column}: YAML (and Helm) "
            "allow only printable characters, tab and newlines in a file"
        )
        expected = "printable text"
        fix = (
            f"delete the character at line {line}, column {column} (or write it as an escape in a double-quoted string)"
        )
        return RayLLMError(
            message=f"{where}: {message}",
            expected=expected,
            fix=fix,
            findings=[Finding("yaml", ERROR, "", message, expected=expected, fix=fix, origin=where)],
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in str(problem):
        where = f"{name}:{mark.line + 1}" if mark else name
        message = (
            "several YAML documents ('---') in one values file: Helm 3 reads only the first and "
            "Helm 4 merges them, so the values depend on the Helm version"
        )
        expected = "one YAML document per values file"
        fix = "join them into one document or pass each with its own -f"
        return YAMLInputRejected(
            message=f"{where}: {message}",
            expected=expected,
            fix=fix,
            findings=[Finding("yaml", ERROR, "", message, expected=expected, fix=fix, origin=where)],
        )
    if mark is not None:
        where = f"{name}:{mark.line + 1}"
        lines = text.splitlines()
        bad_line = lines[mark.line] if mark.line < len(lines) else ""
        col = mark.column
        if "\t" in bad_line[: col + 1] or "tab" in str(problem):
            tab_col = bad_line.find("\t") + 1 if "\t" in bad_line else col + 1
            message = f"a tab character at line {mark.line + 1}, column {tab_col}: YAML indents with spaces only"
            expected, fix = "spaces for indentation", f"replace the tab(s) on line {mark.line + 1} with spaces"
        else:
            context = getattr(exc, "context", None)
            message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
            expected, fix = "valid YAML", f"fix the YAML at {where}"
        return RayLLMError(
            message=f"{where}: {message}",
            expected=expected,
            fix=fix,
            findings=[Finding("yaml", ERROR, "", message, expected=expected, fix=fix, origin=where)],
        )
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RayLLMError(
        message=f"cannot read {name} as YAML: {first}",
        expected="a UTF-8 YAML file",
        fix="pass a values YAML file",
        findings=[
            Finding(
                "yaml",
                ERROR,
                "",
                f"not YAML: {first}",
                expected="a UTF-8 YAML file",
                fix="pass a values YAML file",
                origin=name,
            )
        ],
    )


def _single_meaningful_document(text: str, loader_cls: Any, exc: Exception) -> Tuple[bool, Any]:
    """A stream where only the first document may have content (``a: 1`` then an empty ``---``):
    (True, that first node). Anything else (two documents with content): (False, None), the caller
    reports several documents."""
    if "another document" not in str(getattr(exc, "problem", "")):
        return False, None
    loader = loader_cls(text)
    try:
        docs = []
        while loader.check_node():
            docs.append(loader.get_node())
    except yaml.YAMLError:
        return False, None
    finally:
        loader.dispose()
    if docs and all(
        d is None or (isinstance(d, yaml.ScalarNode) and d.value == "" and d.tag == yaml_helm.PLAIN_TAG)
        for d in docs[1:]
    ):
        return True, docs[0]
    return False, None


_CORE_TAGS = {
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:null": "null",
}
_SURROGATE = re.compile("[\\ud800-\\udfff]")


class _TrackedWalk:
    """Node tree -> plain values + ``origins`` + findings, the way Helm reads each value.

    Every node is judged once (aliases repeat nodes; their findings are not repeated).
    """

    def __init__(
        self, loader: Any, name: str, text: str, origins: Dict[PathT, Tuple[str, str]], problems: List[Finding]
    ) -> None:
        self.loader = loader
        self.name = name
        self.origins = origins
        self.problems = problems
        self.judged: set = set()
        self.merged_prefix: Dict[int, int] = {}
        self.check_surrogates = "\\u" in text or "\\U" in text

    def run(self, node: Any) -> Any:
        if node is None:
            return {}
        return self.walk(node, (), node.start_mark.line + 1)

    def problem(
        self,
        node: Any,
        kind: str,
        path: PathT,
        line: int,
        message: str,
        value: Any = None,
        expected: str = "",
        fix: str = "",
        severity: str = ERROR,
    ) -> None:
        if (id(node), kind) in self.judged:
            return
        self.judged.add((id(node), kind))
        self.problems.append(
            Finding("yaml", severity, format_path(path), message, value, expected, fix, f"{self.name}:{line}")
        )

    # ---- scalars
    def scalar(self, n: yaml.ScalarNode, path: PathT, line: int, is_key: bool = False) -> Any:
        tag = n.tag
        if tag == yaml_helm.PLAIN_TAG:
            value = yaml_helm.helm_plain_value(n.value)
            if n.value in yaml_helm.YAML11_BOOLS and not is_key:
                self.problem(
                    n,
                    "yaml11",
                    path,
                    line,
                    f"unquoted `{n.value}` is the boolean {str(value).lower()} for Helm (YAML 1.1), "
                    f"while YAML 1.2 tools and readers take it for the word {n.value!r}",
                    n.value,
                    f"`{str(value).lower()}` for a boolean, or '{n.value}' in quotes for a string",
                    f"write {str(value).lower()}, or quote it ('{n.value}') if you meant the text",
                    severity=WARNING,
                )
        elif tag in _CORE_TAGS:
            value = yaml_helm.helm_plain_value(n.value) if n.value else None
            want = _CORE_TAGS[tag]
            ok = {
                "bool": isinstance(value, bool),
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                "null": value is None,
            }[want]
            if not ok:
                self.problem(
                    n,
                    "tag",
                    path,
                    line,
                    f"`!!{want} {n.value}`: Helm cannot read {n.value!r} as a {want} and refuses the file",
                    n.value,
                    f"a {want} after !!{want}",
                    f"fix the value or drop the !!{want} tag",
                )
                return n.value
            if want == "float" and isinstance(value, (int, float)):  # always a number here (ok above)
                value = float(value)
        elif tag in type(self.loader).yaml_constructors and tag is not None:
            try:
                value = self.loader.construct_object(n, deep=True)
            except Exception as exc:  # noqa: BLE001 - !!binary garbage, !!timestamp nonsense, ...
                short = tag.rsplit(":", 1)[-1]
                self.problem(
                    n,
                    "tag",
                    path,
                    line,
                    f"`!!{short}` value cannot be read: {str(exc).splitlines()[0]}",
                    n.value,
                    f"a valid !!{short} value",
                    f"fix the value or drop the !!{short} tag",
                )
                return n.value
        else:
            if not is_key:
                self.problem(
                    n,
                    "unknown-tag",
                    path,
                    line,
                    f"the tag {tag.replace('tag:yaml.org,2002:', '!!')} means nothing to Helm: it reads "
                    f"the value as the string {n.value!r}",
                    n.value,
                    "no tag (or a standard one: !!str, !!int, !!float, !!bool)",
                    "remove the tag",
                    severity=WARNING,
                )
            return n.value
        if isinstance(value, (datetime.date, datetime.datetime)):
            value = n.value  # Helm keeps timestamps as strings
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")  # Helm decodes !!binary into a string
        if is_key:  # keys become strings (1e400 -> "+Inf", .nan -> "NaN"): no float round trip to lose
            pass
        elif isinstance(value, float) and not math.isfinite(value):
            self.problem(
                n,
                "nan",
                path,
                line,
                f"{n.value!r} is {'not a number' if math.isnan(value) else 'infinite'}: Helm fails on it "
                "('json: unsupported value')",
                n.value,
                "a finite number",
                "use a finite number, or quote it if it is text",
            )
            return n.value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > yaml_helm.EXACT_INT_LIMIT:
            self.problem(
                n,
                "big",
                path,
                line,
                f"{n.value} is beyond 2^53: Helm keeps numbers as 64-bit floats, so it becomes "
                f"{float(value)!r} and templates print it in exponent form",
                n.value,
                f"a number within +/-{yaml_helm.EXACT_INT_LIMIT:,} (2^53)",
                "use a smaller number, or quote it if it is an id or text",
            )
        if isinstance(value, str) and self.check_surrogates and _SURROGATE.search(value):
            self.problem(
                n,
                "surrogate",
                path,
                line,
                "a \\uD800-\\uDFFF escape (half of a UTF-16 surrogate pair) is not a character: Helm "
                "refuses the file ('invalid Unicode character escape code')",
                value.encode("utf-8", "backslashreplace").decode("utf-8"),
                "a whole character (write \\U0001F600, not \\uD83D\\uDE00)",
                "fix the escape, or write the character itself",
            )
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value

    # ---- collections
    def walk(self, n: Any, path: PathT, line: int) -> Any:
        if isinstance(n, yaml.MappingNode):
            return self.mapping(n, path, line)
        self.origins[path] = (f"{self.name}:{line}", OTHER)
        if isinstance(n, yaml.SequenceNode):
            return [self.walk(item, path + (i,), item.start_mark.line + 1) for i, item in enumerate(n.value)]
        return self.scalar(n, path, line)

    def mapping(self, n: yaml.MappingNode, path: PathT, line: int) -> Dict[str, Any]:
        prefix = self.merged_prefix.get(id(n))
        if prefix is None:
            own = sum(1 for k, _ in n.value if k.tag != yaml_helm.MERGE_TAG)
            try:
                self.loader.flatten_mapping(n)
            except yaml.constructor.ConstructorError as exc:
                mark = exc.problem_mark or n.start_mark
                self.problem(
                    n,
                    "merge",
                    path,
                    mark.line + 1,
                    "`<<` (merge key) takes an alias to a mapping or a list of them; Helm refuses "
                    "this file ('map merge requires map or sequence of maps')",
                    None,
                    "<<: *anchor or <<: [*a, *b]",
                    "point << at mapping anchors or remove it",
                )
                n.value = [(k, v) for k, v in n.value if k.tag != yaml_helm.MERGE_TAG]
            prefix = self.merged_prefix[id(n)] = len(n.value) - own
        self.origins[path] = (f"{self.name}:{line}", MAP)
        out: Dict[str, Any] = {}
        first: Dict[str, Tuple[int, str]] = {}
        for i, (k_node, v_node) in enumerate(n.value):
            kline = k_node.start_mark.line + 1
            if not isinstance(k_node, yaml.ScalarNode):
                kind = "list" if isinstance(k_node, yaml.SequenceNode) else "map"
                self.problem(
                    k_node,
                    "key",
                    path,
                    kline,
                    f"a {kind} used as a key ('? ' complex key): Helm refuses the file ('invalid map key')",
                    None,
                    "a string key",
                    "use a plain string key",
                )
                continue
            raw = self.scalar(k_node, path, kline, is_key=True)
            if raw is None:
                self.problem(
                    k_node,
                    "key",
                    path,
                    kline,
                    f"a null key ({k_node.value or 'empty'!s}): Helm refuses the file ('unsupported map key')",
                    k_node.value,
                    "a string key",
                    "quote the key or remove it",
                )
                continue
            if isinstance(raw, int) and not isinstance(raw, bool) and raw > yaml_helm.INT64_MAX:
                self.problem(
                    k_node,
                    "key",
                    path,
                    kline,
                    f"the unquoted key `{k_node.value}` is an unsigned 64-bit number: Helm refuses the file "
                    "('unsupported map key of type: uint64')",
                    k_node.value,
                    "a string key",
                    f'quote the key: "{k_node.value}":',
                )
                continue
            key = _key_str(raw)
            kpath = path + (key,)
            if k_node.tag == yaml_helm.PLAIN_TAG and k_node.value in yaml_helm.YAML11_BOOLS:
                self.problem(
                    k_node,
                    "yaml11-key",
                    kpath,
                    kline,
                    f"the unquoted key `{k_node.value}` is the boolean {key} for Helm (YAML 1.1), so this "
                    f"entry is named {key!r}, not {k_node.value!r}",
                    k_node.value,
                    f'a quoted key: "{k_node.value}":',
                    f'quote the key: "{k_node.value}":',
                )
            elif k_node.tag == yaml_helm.PLAIN_TAG and key != k_node.value and not isinstance(raw, str):
                self.problem(
                    k_node,
                    "key-text",
                    kpath,
                    kline,
                    f"the unquoted key `{k_node.value}` is a {type(raw).__name__} for Helm and becomes the key {key!r}",
                    k_node.value,
                    f'a quoted key: "{k_node.value}":',
                    f'quote the key ("{k_node.value}":) if you meant that text',
                    severity=WARNING,
                )
            if i >= prefix:  # keys merged in by << may be overridden; the mapping's own keys may not repeat
                if key in first:
                    fline, ftext = first[key]
                    same = "" if ftext == k_node.value else f" (`{ftext}` and `{k_node.value}` both become {key!r})"
                    self.problem(
                        k_node,
                        "dup",
                        kpath,
                        kline,
                        f"duplicate key {key!r}{same}: set on line {fline} and again on line {kline}; Helm "
                        f"silently keeps only the last one (line {kline}), dropping line {fline} entirely",
                        None,
                        "each key once per mapping",
                        f"delete one of the two, or merge line {fline}'s settings into line {kline}'s",
                    )
                first[key] = (kline, k_node.value)
            out[key] = self.walk(v_node, kpath, kline)
        return out


def load_yaml_tracked(
    text: str, name: str, _loader: Any = None
) -> Tuple[Any, Dict[PathT, Tuple[str, str]], List[Finding]]:
    """Parse one YAML document; return (data, origins, problems). Raises RayLLMError on syntax errors."""
    if _loader is None:
        fast = _fast_loader()
        if fast is not None:
            try:
                return load_yaml_tracked(text, name, fast)
            except YAMLInputRejected:
                raise  # a limit or several documents: the reference parser would only say the same, slower
            except Exception:  # noqa: BLE001 - bad input: the pure-Python parser's result and messages are the reference
                pass
        _loader = _Loader
    try:
        loader = _loader(text)  # the pure-Python reader checks every character here
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, name) from None
    problems: List[Finding] = []
    origins: Dict[PathT, Tuple[str, str]] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the node tree is acyclic; collecting while it grows makes big files quadratic
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            lenient, node = _single_meaningful_document(text, _loader, exc)
            if not lenient:
                raise _yaml_error(exc, text, name) from None
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, text, name) from None
        except RecursionError:  # the pure-Python composer on nesting past the interpreter's stack
            raise _yaml_error(
                yaml_helm.YAMLLimitError("depth", f"the values nest more than {yaml_helm.MAX_DEPTH} levels deep"),
                text,
                name,
            ) from None
        if node is not None and "*" in text:
            try:
                yaml_helm.check_aliases(node)
            except yaml_helm.YAMLLimitError as exc:
                raise _yaml_error(exc, text, name) from None
        data = _TrackedWalk(loader, name, text, origins, problems).run(node)
    finally:
        loader.dispose()
        if gc_was_enabled:
            gc.enable()
    return data, origins, problems


def load_values_file(path: Path) -> Tuple[Source, List[Finding]]:
    """Read one values file. Missing/unreadable file -> UsageError (exit 2); bad content -> RayLLMError (exit 1)."""
    name = str(path)
    limit = yaml_helm.max_values_file_bytes()
    size: Optional[int] = None
    if str(path) == "-":
        import sys

        raw = sys.stdin.buffer.read(limit + 1)  # never more than the limit in memory
        name = "<stdin>"
    else:
        if not path.exists():
            raise UsageError(f"values file {name} does not exist", fix="check the -f path")
        if path.is_dir():
            raise UsageError(f"values file {name} is a directory", fix="pass a YAML file to -f")
        try:
            size = path.stat().st_size
            if size > limit:
                raw = b""
            else:
                with path.open("rb") as fh:  # a FIFO or /dev/zero has no size: read one byte past the limit
                    raw = fh.read(limit + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}", fix="check the file's permissions") from exc
    if (size or 0) > limit or len(raw) > limit:
        shown = f"{size / 1048576:.1f} MiB" if size and size > limit else "larger than that"
        message = f"file too large: {shown}; the limit is {limit / 1048576:g} MiB per values file"
        expected = (
            f"a values file up to {limit / 1048576:g} MiB (Helm stores the values and what they "
            "render in a release Secret capped at 1 MiB)"
        )
        fix = "split it into several -f files or remove generated bulk (RAYLLM_MAX_VALUES_MIB raises this tool's limit)"
        raise RayLLMError(
            message=f"{name}: {message}",
            expected=expected,
            fix=fix,
            findings=[Finding("yaml", ERROR, "", message, expected=expected, fix=fix, origin=name)],
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        what = "UTF-16 text" if utf16 else f"not UTF-8 text (invalid byte at offset {exc.start})"
        fix = "save the file as UTF-8" if utf16 else "pass a values YAML file (UTF-8 text)"
        raise RayLLMError(
            message=f"{name} is {'UTF-16' if utf16 else 'not UTF-8'} text (byte {exc.start})",
            expected="a UTF-8 YAML file",
            fix=fix,
            findings=[Finding("yaml", ERROR, "", what, expected="a UTF-8 YAML values file", fix=fix, origin=name)],
        ) from None
    if "\x00" in text:
        raise RayLLMError(
            message=f"{name} is a binary file",
            expected="a YAML file",
            fix="pass a values YAML file",
            findings=[
                Finding(
                    "yaml",
                    ERROR,
                    "",
                    "binary content (NUL bytes)",
                    expected="a YAML values file",
                    fix="pass a values YAML file",
                    origin=name,
                )
            ],
        )
    data, origins, problems = load_yaml_tracked(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise RayLLMError(
            message=f"{name}: the top level is a {kind}",
            expected="a mapping of values keys",
            fix="make the file a YAML mapping (key: value)",
            findings=[
                Finding(
                    "yaml",
                    ERROR,
                    "",
                    f"top level of the file is a {kind}",
                    value=None,
                    expected="a mapping (key: value) at the top level",
                    fix="make the file a YAML mapping",
                    origin=f"{name}:1",
                )
            ],
        )
    return Source(name, data, origins), problems


# --------------------------------------------------------------------------- Helm's merge


def merge_maps(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    """Helm's ``mergeMaps`` between -f files."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
            continue
        out[k] = v
    return out


def coalesce(user: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    """Helm's ``coalesceValues``/``coalesceTablesFullKey`` (merge=false): chart defaults under user values."""
    out = dict(user)
    for key, dval in defaults.items():
        if key in out:
            uval = out[key]
            if uval is None:
                del out[key]
            elif isinstance(uval, dict) and isinstance(dval, dict):
                out[key] = coalesce(uval, dval)
        else:
            out[key] = copy.deepcopy(dval)
    return out


# --------------------------------------------------------------------------- Helm's --set


class _SetParser:
    """Helm's ``pkg/strvals`` parser (``ParseInto`` / ``ParseIntoString``)."""

    def __init__(self, expr: str, string_values: bool) -> None:
        self.expr = expr
        self.s = expr
        self.i = 0
        self.string_values = string_values
        self.leaves: List[PathT] = []

    def fail(self, msg: str) -> UsageError:
        flag = "--set-string" if self.string_values else "--set"
        return UsageError(
            f"{flag} {self.expr!r}: {msg}", fix="use Helm's syntax: a.b=c, a[0].b=c, a={x,y}, pairs separated by commas"
        )

    def _read_until(self, stops: str) -> Tuple[str, Optional[str]]:
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                if self.i < len(self.s):
                    out.append(self.s[self.i])
                    self.i += 1
                continue
            if c in stops:
                return "".join(out), c
            out.append(c)
        return "".join(out), None

    def typed(self, text: str) -> Any:
        if self.string_values:
            return text
        low = text.lower()
        if low == "true":
            return True
        if low == "false":
            return False
        if low == "null":
            return None
        if text == "0":
            return 0
        if text and text[0] != "0":
            try:
                if text.lstrip("+-").isdigit() and text.strip() == text:
                    return int(text, 10)
            except ValueError:
                pass
        return text

    def parse_into(self, data: Dict[str, Any]) -> None:
        while self.i < len(self.s):
            self._key(data, ())

    def _value(self) -> Any:
        # a list {a,b} or a scalar up to the next top-level comma
        if self.i < len(self.s) and self.s[self.i] == "{":
            self.i += 1
            items = []
            while True:
                text, stop = self._read_until(",}")
                if stop is None:
                    raise self.fail("list value has no closing '}'")
                items.append(self.typed(text))
                if stop == "}":
                    break
            if self.i < len(self.s):
                if self.s[self.i] != ",":
                    raise self.fail(f"unexpected {self.s[self.i]!r} after a list value")
                self.i += 1
            return items
        text, _ = self._read_until(",")
        return self.typed(text)

    def _key(self, data: Dict[str, Any], path: PathT) -> None:
        self._depth_guard(path)
        key, stop = self._read_until("=[.,")
        if stop is None or stop == ",":
            raise self.fail(f"key {key!r} has no value")
        if not key:
            raise self.fail("empty key")
        if stop == "=":
            data[key] = self._value()
            self.leaves.append(path + (key,))
            return
        if stop == ".":
            inner = data.get(key)
            if not isinstance(inner, dict):
                inner = {}
            data[key] = inner
            self._key(inner, path + (key,))
            return
        # '[': list index
        lst = data.get(key)
        if not isinstance(lst, list):
            lst = []
        data[key] = self._list(lst, path + (key,))

    def _index(self) -> int:
        text, stop = self._read_until("]")
        if stop is None:
            raise self.fail("missing ']' in list index")
        try:
            idx = int(text)
        except ValueError:
            raise self.fail(f"list index {text!r} is not a number") from None
        if idx < 0:
            raise self.fail(f"negative list index {idx}")
        if idx > 65536:
            raise self.fail(f"list index {idx} is too large (Helm allows 65536)")
        return idx

    def _depth_guard(self, path: PathT) -> None:
        if len(path) >= yaml_helm.MAX_DEPTH:
            raise self.fail(f"the key nests more than {yaml_helm.MAX_DEPTH} levels deep (this chart reads ~12)")

    def _list(self, lst: List[Any], path: PathT) -> List[Any]:
        self._depth_guard(path)
        idx = self._index()
        while len(lst) <= idx:
            lst.append(None)
        if self.i >= len(self.s):
            raise self.fail("list index has no value")
        c = self.s[self.i]
        self.i += 1
        if c == "=":
            lst[idx] = self._value()
            self.leaves.append(path + (idx,))
        elif c == ".":
            inner = lst[idx] if isinstance(lst[idx], dict) else {}
            lst[idx] = inner
            self._key(inner, path + (idx,))
        elif c == "[":
            inner_list = lst[idx] if isinstance(lst[idx], list) else []
            lst[idx] = self._list(inner_list, path + (idx,))
        else:
            raise self.fail(f"unexpected {c!r} after a list index")
        return lst


def apply_set(data: Dict[str, Any], expr: str, string_values: bool = False) -> List[PathT]:
    """Parse one ``--set`` expression into ``data`` (in place); return the paths it set."""
    parser = _SetParser(expr, string_values)
    parser.parse_into(data)
    return parser.leaves


# --------------------------------------------------------------------------- the whole merge


@dataclass
class Merged:
    values: Dict[str, Any]
    sources: List[Source]
    problems: List[Finding]

    def origin(self, path: Sequence[Union[str, int]]) -> str:
        path = tuple(path)
        for src in reversed(self.sources):
            hit = src.origins.get(path)
            if hit:
                return hit[0]
            for n in range(len(path) - 1, -1, -1):
                pre = src.origins.get(path[:n])
                if pre and pre[1] != MAP:
                    return pre[0]
        # a path that only exists as a default below a map: the nearest known ancestor
        for n in range(len(path), -1, -1):
            for src in reversed(self.sources):
                hit = src.origins.get(path[:n])
                if hit:
                    return hit[0]
        return ""


def chart_dir() -> Path:
    """The ray-llm chart the CLI checks values against.

    ``$RAYLLM_CHART`` first (the Helm plugin sets it to its checkout's chart);
    then the source checkout this module lives in (an editable install); then
    ``charts/ray-llm`` in the working directory or a parent (a wheel install run
    from a clone). A wheel carries no chart, so without either it is a usage error.
    """
    env = os.environ.get("RAYLLM_CHART")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parents[2] / "charts" / "ray-llm"
    if (here / "Chart.yaml").is_file():
        return here
    cwd = Path.cwd().resolve()
    for base in (cwd, *cwd.parents):
        cand = base / "charts" / "ray-llm"
        if (cand / "Chart.yaml").is_file():
            return cand
    raise UsageError(
        "got no ray-llm chart: this install has none beside it and none was found under "
        "./charts/ray-llm or a parent directory",
        fix="set RAYLLM_CHART=/path/to/charts/ray-llm (or run from a ray-llm checkout)",
    )


def merge_values(
    files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    chart: Optional[Path] = None,
    set_order: Optional[Sequence[Tuple[str, str]]] = None,
) -> Merged:
    """Helm's merge of chart defaults, ``-f`` files and ``--set``s.

    ``set_order`` ([("set"|"set-string", expr), ...]) keeps the command line
    order across both flags; by default all --set come before --set-string
    (Helm applies --set first, then --set-string, within each in order).
    """
    chart = chart or chart_dir()
    defaults_path = chart / "values.yaml"
    chart_src, problems = load_values_file(defaults_path)
    chart_src.name = str(defaults_path)
    sources: List[Source] = [chart_src]
    user: Dict[str, Any] = {}
    for f in files:
        src, probs = load_values_file(Path(f))
        problems += probs
        sources.append(src)
        user = merge_maps(user, src.data)
    user = copy.deepcopy(user)
    order = (
        list(set_order)
        if set_order is not None
        else ([("set", s) for s in sets] + [("set-string", s) for s in set_strings])
    )
    for flag, expr in order:
        leaves = apply_set(user, expr, string_values=(flag == "set-string"))
        src = Source(f"--{flag}", {}, {p: (f"--{flag} {expr}", OTHER) for p in leaves})
        sources.append(src)
    values = coalesce(user, chart_src.data)
    return Merged(values, sources, problems)
