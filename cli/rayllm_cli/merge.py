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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from .errors import ERROR, RayLLMError, UsageError, ValuesFinding

PathT = Tuple[Union[str, int], ...]

# origin kinds: a map merges with what is below it; anything else replaces it
MAP = "map"
OTHER = "other"


def format_path(path: Sequence[Union[str, int]]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "_-" for c in part):
            out += ("." if out else "") + part
        else:
            out += f'["{part}"]'
    return out


@dataclass
class Source:
    name: str  # file path or "--set"
    data: Dict[str, Any]
    origins: Dict[PathT, Tuple[str, str]] = field(default_factory=dict)  # path -> (origin, kind)


class _Loader(yaml.SafeLoader):
    pass


def _key_str(value: Any) -> str:
    # sigs.k8s.io/yaml turns non-string keys into their JSON-ish text
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


def load_yaml_tracked(text: str, name: str) -> Tuple[Any, Dict[PathT, Tuple[str, str]], List[ValuesFinding]]:
    """Parse one YAML document; return (data, origins, problems). Raises RayLLMError on syntax errors."""
    loader = _Loader(text)
    problems: List[ValuesFinding] = []
    origins: Dict[PathT, Tuple[str, str]] = {}
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{name}:{mark.line + 1}" if mark else name
            raise RayLLMError(
                message=f"YAML syntax error: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else ""),
                path="", expected="a valid YAML mapping", fix=f"fix the YAML at {where}",
                findings=[ValuesFinding("yaml", ERROR, "", f"YAML syntax error: {exc.problem or exc}",
                                        expected="valid YAML", fix="fix the syntax", origin=where)],
            ) from None
        except yaml.YAMLError as exc:
            raise RayLLMError(
                message=f"cannot read {name} as YAML: {str(exc).splitlines()[0]}",
                expected="a UTF-8 YAML file", fix="pass a values YAML file",
                findings=[ValuesFinding("yaml", ERROR, "", f"not YAML: {str(exc).splitlines()[0]}",
                                        expected="a UTF-8 YAML file", fix="pass a values YAML file", origin=name)],
            ) from None

        def walk(n: yaml.Node, path: PathT, line: int) -> Any:
            if isinstance(n, yaml.MappingNode):
                loader.flatten_mapping(n)
                origins[path] = (f"{name}:{line}", MAP)
                out: Dict[str, Any] = {}
                for k_node, v_node in n.value:
                    key = _key_str(loader.construct_object(k_node, deep=True))
                    if key in out:
                        problems.append(ValuesFinding(
                            "yaml", ERROR, format_path(path + (key,)), f"duplicate key {key!r}",
                            expected="each key once (Helm rejects duplicate keys)",
                            fix="remove one of them", origin=f"{name}:{k_node.start_mark.line + 1}"))
                    out[key] = walk(v_node, path + (key,), k_node.start_mark.line + 1)
                return out
            origins[path] = (f"{name}:{line}", OTHER)
            if isinstance(n, yaml.SequenceNode):
                return [walk(item, path + (i,), item.start_mark.line + 1) for i, item in enumerate(n.value)]
            value = loader.construct_object(n, deep=True)
            if isinstance(value, (datetime.date, datetime.datetime)):
                value = n.value  # Helm keeps timestamps as strings
            elif isinstance(value, bytes):
                value = n.value
            return value

        if node is None:
            return {}, origins, problems
        data = walk(node, (), node.start_mark.line + 1)
    finally:
        loader.dispose()
    return data, origins, problems


def load_values_file(path: Path) -> Tuple[Source, List[ValuesFinding]]:
    """Read one values file. Missing/unreadable file -> UsageError (exit 2); bad content -> RayLLMError (exit 1)."""
    name = str(path)
    if str(path) == "-":
        import sys
        raw = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        if not path.exists():
            raise UsageError(f"values file {name} does not exist", fix="check the -f path")
        if path.is_dir():
            raise UsageError(f"values file {name} is a directory", fix="pass a YAML file to -f")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}", fix="check the file's permissions")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RayLLMError(
            message=f"{name} is not UTF-8 text (byte {exc.start})", expected="a UTF-8 YAML file",
            fix="pass a values YAML file",
            findings=[ValuesFinding("yaml", ERROR, "", f"not UTF-8 text (invalid byte at offset {exc.start})",
                                    expected="a UTF-8 YAML values file", fix="pass a values YAML file", origin=name)],
        ) from None
    if "\x00" in text:
        raise RayLLMError(
            message=f"{name} is a binary file", expected="a YAML file", fix="pass a values YAML file",
            findings=[ValuesFinding("yaml", ERROR, "", "binary content (NUL bytes)", expected="a YAML values file",
                                    fix="pass a values YAML file", origin=name)],
        )
    data, origins, problems = load_yaml_tracked(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise RayLLMError(
            message=f"{name}: the top level is a {kind}", expected="a mapping of values keys",
            fix="make the file a YAML mapping (key: value)",
            findings=[ValuesFinding("yaml", ERROR, "", f"top level of the file is a {kind}",
                                    value=None, expected="a mapping (key: value) at the top level",
                                    fix="make the file a YAML mapping", origin=f"{name}:1")],
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
        return UsageError(f"{flag} {self.expr!r}: {msg}",
                          fix="use Helm's syntax: a.b=c, a[0].b=c, a={x,y}, pairs separated by commas")

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

    def _list(self, lst: List[Any], path: PathT) -> List[Any]:
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
    problems: List[ValuesFinding]

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
    return Path(__file__).resolve().parents[2] / "charts" / "ray-llm"


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
    order = list(set_order) if set_order is not None else (
        [("set", s) for s in sets] + [("set-string", s) for s in set_strings])
    for flag, expr in order:
        leaves = apply_set(user, expr, string_values=(flag == "set-string"))
        src = Source(f"--{flag}", {}, {p: (f"--{flag} {expr}", OTHER) for p in leaves})
        sources.append(src)
    values = coalesce(user, chart_src.data)
    return Merged(values, sources, problems)
