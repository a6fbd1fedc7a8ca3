"""Read YAML the way Helm does, within limits that hostile input cannot break.

Helm reads values files with ``sigs.k8s.io/yaml`` (go-yaml v2, YAML 1.1 rules)
and then round-trips them through JSON. PyYAML follows YAML 1.1 too, but not
in the same way, so :class:`HelmScalarsMixin` resolves every *plain* (unquoted)
scalar like Helm does (checked against ``helm template`` 3.18 and 4.1):

* booleans: ``true/false`` and also ``y, Y, yes, on, n, no, off`` (any case
  variant go-yaml knows); PyYAML leaves ``y``/``n`` as strings;
* integers: decimal, ``0x``, ``0o``, ``0b``, a leading ``0`` is octal, ``_``
  is ignored; anything that fits no 64-bit integer but looks like a float
  becomes a float (``08`` is 8.0, ``1e308`` is a float, PyYAML keeps both as
  strings); ``1:20`` stays a string (PyYAML makes it 80);
* floats that overflow (``1e400``) stay strings;
* every other plain scalar (timestamps included) is a string.

Map keys become strings the way ``sigs.k8s.io/yaml`` writes them
(:func:`helm_key`): ``on:`` is the key ``"true"``, ``1e6:`` is ``"1e+06"``.

Limits (each one gives a clear error naming the file, never a crash; the
numbers are module constants so tests and docs can quote them):

* ``MAX_VALUES_FILE_BYTES`` (4 MiB, ``RAYLLM_MAX_VALUES_MIB`` overrides it): a
  values file larger than that is refused before it is read in full. Helm has
  no limit of its own for ``-f`` files, but it stores the user values *and*
  the manifests rendered from them in the release Secret, which Kubernetes
  caps at 1 MiB (gzip'd); a 4 MiB values file is already far beyond anything
  installable. A realistic 4 MiB file (11,000 models, 350,000 values)
  validates in ~3 s and ~270 MB.
* ``MAX_DEPTH`` (100 levels of nesting): the deepest value this chart reads
  is ~12 levels down (a tier's affinity); libyaml's composer recurses in C and
  crashes the interpreter on ~100,000 nested ``[``.
* ``MAX_NODES`` (500,000 values, keys included, aliases not expanded): a
  dense flow list fits ~2 million values in 4 MiB, and every value costs
  ~0.6 KB here (node, marks, origin); at the limit a run peaks at ~350 MB.
* alias expansion (billion laughs): the rule go-yaml applies for Helm (a
  document may take at most 99% of its values from aliases while it is small,
  scaling down to 10% for 4 million values; at least 1,000 values and 100
  alias-driven ones before it judges), plus an absolute cap of
  ``MAX_ALIAS_VALUES`` (100,000) values expanded from aliases.
"""

from __future__ import annotations

import math
import os
import re
import struct
from typing import Any, Optional, Tuple, TypeVar

import yaml

MAX_VALUES_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 500_000
MAX_ALIAS_VALUES = 100_000

PLAIN_TAG = "tag:rayllm.dev,2025:helm-plain"
# A loader class (SafeLoader or CSafeLoader with HelmScalarsMixin) that install() registers on.
_LoaderT = TypeVar("_LoaderT", bound=type[yaml.constructor.BaseConstructor])
MERGE_TAG = "tag:yaml.org,2002:merge"

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"})
#: booleans only YAML 1.1 knows: YAML 1.2 tools (and a human) read them as words
YAML11_BOOLS = (_TRUE | _FALSE) - {"true", "True", "TRUE", "false", "False", "FALSE"}
_SPECIAL_FLOATS = {
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
}
_FLOAT_SYNTAX = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT_SYNTAX = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_INT_BODY = {
    16: re.compile(r"[0-9a-fA-F]+"),
    8: re.compile(r"[0-7]+"),
    2: re.compile(r"[01]+"),
    10: re.compile(r"[0-9]+"),
}

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_MAX_DIGITS = {16: 16, 10: 20, 8: 22, 2: 64}  # digits of UINT64_MAX per base
#: integers beyond this lose precision in Helm (its values are float64 after the JSON round trip)
EXACT_INT_LIMIT = 2**53


def max_values_file_bytes() -> int:
    """The size limit for one values file (``RAYLLM_MAX_VALUES_MIB`` overrides the 4 MiB default)."""
    raw = os.environ.get("RAYLLM_MAX_VALUES_MIB", "").strip()
    try:
        mib = float(raw) if raw else 0.0
    except ValueError:
        mib = 0.0
    return int(mib * 1024 * 1024) if mib > 0 else MAX_VALUES_FILE_BYTES


# --------------------------------------------------------------------------- scalars


def _go_int(text: str) -> Optional[int]:
    """An integer the way Go's ``strconv.ParseInt(text, 0, 64)`` / ``ParseUint`` read it, else None."""
    sign = 1
    body = text
    if body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    low = body[:2].lower()
    if low == "0x":
        base, digits = 16, body[2:]
    elif low == "0o":
        base, digits = 8, body[2:]
    elif low == "0b":
        base, digits = 2, body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    if not digits or not _INT_BODY[base].fullmatch(digits):
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > _MAX_DIGITS[base]:  # beyond 64 bits (and int() of 5,000 digits raises)
        return None
    value = sign * int(significant, base)
    if INT64_MIN <= value <= INT64_MAX:
        return value
    if text[:1] not in "+-" and value <= UINT64_MAX:  # ParseUint takes no sign
        return value
    return None


def helm_plain_value(text: str) -> Any:
    """The value Helm (go-yaml v2) gives an unquoted scalar ``text``."""
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    special = _SPECIAL_FLOATS.get(text)
    if special is not None:
        return special
    first = text[0]
    if first == ".":
        if _DOT_FLOAT_SYNTAX.fullmatch(text):
            value = float(text)
            return value if math.isfinite(value) else text
        return text
    if first in "+-" or first.isdigit():
        plain = text.replace("_", "")
        if not plain or not plain.isascii():
            return text
        as_int = _go_int(plain)
        if as_int is not None:
            return as_int
        if _FLOAT_SYNTAX.fullmatch(plain):
            value = float(plain)
            return value if math.isfinite(value) else text  # Go: out of range -> stays a string
    return text


def _float32(value: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _go_float_key(value: float) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 32)``: how sigs.k8s.io/yaml writes a float map key
    (which then spells the special values the YAML way: ``.nan``, ``.inf``, ``-.inf``)."""
    if math.isnan(value):
        return ".nan"
    f32 = _float32(value)
    if math.isinf(f32):
        return ".inf" if f32 > 0 else "-.inf"
    if value == 0:
        return "0"
    for prec in range(1, 10):  # shortest digits that read back as the same float32
        text = f"{f32:.{prec - 1}e}"
        if _float32(float(text)) == f32:
            break
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text)
    digits = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    sign = "-" if f32 < 0 else ""
    if exp < -4 or exp >= 6:  # Go's %g with the shortest precision switches to %e here
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return f"{sign}{digits}{'0' * (exp + 1 - len(digits))}"
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def helm_key(value: Any) -> str:
    """The string a scalar map key becomes in Helm's values (sigs.k8s.io/yaml's JSON conversion)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if INT64_MIN <= value <= UINT64_MAX:  # (Helm refuses keys above INT64_MAX: the caller says so)
            return str(value)
        return _go_float_key(float(value))
    if isinstance(value, float):
        return _go_float_key(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- limits


class YAMLLimitError(yaml.YAMLError):
    """The document is beyond one of this module's limits (``kind``: depth, nodes, aliases, recursive-alias)."""

    def __init__(self, kind: str, message: str, line: Optional[int] = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.line = line  # 1-based, when known
        # what callers that report yaml.MarkedYAMLError read
        # No buffer, so no snippet: the pointer is never read.
        self.problem_mark = yaml.Mark("<yaml>", 0, line - 1, 0, None, 0) if line else None

    def __str__(self) -> str:
        return self.message


class LimitsMixin:
    """For a PyYAML loader (``SafeLoader`` or libyaml's ``CSafeLoader``): the depth and node-count
    limits, enforced while the node tree is built (before any recursion can run away). Both
    parsers call ``descend_resolver`` / ``ascend_resolver`` around every node they compose."""

    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES
    _rl_depth = 0
    _rl_nodes = 0

    def descend_resolver(self, current_node: Optional[yaml.Node], current_index: Any) -> None:
        self._rl_depth += 1
        self._rl_nodes += 1
        if self._rl_depth > self.max_depth:
            raise YAMLLimitError(
                "depth", f"the values nest more than {self.max_depth} levels deep", self._rl_node_line()
            )
        if self._rl_nodes > self.max_nodes:
            raise YAMLLimitError("nodes", f"the document has more than {self.max_nodes:,} values")
        # A mixin: the loader class it is mixed into supplies the resolver methods.
        return super().descend_resolver(current_node, current_index)  # type: ignore[misc]

    def ascend_resolver(self) -> None:
        self._rl_depth -= 1
        return super().ascend_resolver()  # type: ignore[misc]  # supplied by the loader class (mixin)

    def _rl_node_line(self) -> Optional[int]:
        """The 1-based line of the node being composed, where the parser can tell: PyYAML's
        pure-Python composer has peeked its start event before it descends. libyaml's composer
        keeps that event in C: None, and the caller re-scans (:func:`depth_line`). That
        re-scan cannot stand in here: libyaml (as bundled with PyYAML 6.0.4) refuses a long
        ``[[[...`` at its own flow-nesting limit, which is why such a file reaches this
        parser at all."""
        if not isinstance(self, yaml.composer.Composer):
            return None
        event = self.peek_event()  # type: ignore[attr-defined]  # a Composer's loader has a Parser too
        return event.start_mark.line + 1 if event is not None and event.start_mark is not None else None


class HelmScalarsMixin(LimitsMixin):
    """The limits, and every plain scalar tagged PLAIN_TAG so it is read by :func:`helm_plain_value`."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return MERGE_TAG if value == "<<" else PLAIN_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[misc]  # supplied by the loader class (mixin)


def _construct_plain(loader: Any, node: yaml.ScalarNode) -> Any:
    return helm_plain_value(node.value)


def install(loader_cls: _LoaderT) -> _LoaderT:
    """Register the plain-scalar constructor on ``loader_cls`` (a HelmScalarsMixin loader)."""
    loader_cls.add_constructor(PLAIN_TAG, _construct_plain)
    return loader_cls


def depth_line(text: str, max_depth: int = MAX_DEPTH) -> Optional[int]:
    """The 1-based line where the nesting first goes past ``max_depth`` (an event scan: no recursion)."""
    loader = yaml.SafeLoader(text) if not hasattr(yaml, "CSafeLoader") else yaml.CSafeLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth >= max_depth:
                    return event.start_mark.line + 1 if event.start_mark is not None else None
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _allowed_alias_share(decoded: int) -> float:
    """The share of a document's values that may come from aliases (go-yaml's rule, which Helm inherits)."""
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * (decoded - low) / (high - low)


def check_aliases(root: yaml.Node) -> None:
    """Refuse alias bombs and self-referencing anchors before anything expands them.

    Walks the node graph once (each distinct node once; a node seen again is an
    alias and adds its whole expanded size at once), counting the values a full
    expansion would produce the way go-yaml counts its decode steps.
    """
    sizes: dict = {}  # id(node) -> values in its full expansion
    open_ids: set = set()
    decoded = aliased = 0

    def children(node: yaml.Node):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                yield k
                yield v
        elif isinstance(node, yaml.SequenceNode):
            yield from node.value

    stack = [[root, children(root), 0]]
    open_ids.add(id(root))
    decoded = 1
    while stack:
        frame = stack[-1]
        child = next(frame[1], None)
        if child is None:
            stack.pop()
            open_ids.discard(id(frame[0]))
            size = frame[2] + 1
            sizes[id(frame[0])] = size
            if stack:
                stack[-1][2] += size
            continue
        cid = id(child)
        if cid in open_ids:
            raise YAMLLimitError(
                "recursive-alias",
                "an alias refers to the anchor that contains it (the value would contain itself)",
                child.start_mark.line + 1,
            )
        known = sizes.get(cid)
        if known is not None:  # an alias: the whole subtree again
            decoded += known + 1
            aliased += known
            frame[2] += known
            if aliased > MAX_ALIAS_VALUES or (
                aliased > 100 and decoded > 1000 and aliased / decoded > _allowed_alias_share(decoded)
            ):
                raise YAMLLimitError(
                    "aliases",
                    f"aliases expand the document to more than {decoded:,} values, {aliased:,} of them copies "
                    "made by aliases (an alias bomb?)",
                    child.start_mark.line + 1,
                )
            continue
        if isinstance(child, yaml.ScalarNode):
            sizes[cid] = 1
            frame[2] += 1
            decoded += 1
            continue
        decoded += 1
        open_ids.add(cid)
        stack.append([child, children(child), 0])
