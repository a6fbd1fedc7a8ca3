"""The metric names a dashboard may use, derived from the installed code.

Nothing here lists metric names by hand:

* Ray Serve: every ``ray.util.metrics`` Counter/Gauge/Histogram constructed in
  ``ray/serve`` (found by AST; f-string names such as
  ``f"serve_num_{protocol_name}_requests"`` become patterns). Ray's metrics agent
  exports them under the ``ray_`` namespace.
* vLLM: every metric ``vllm/v1/metrics/loggers.py`` builds through its
  ``_gauge_cls``/``_counter_cls``/``_histogram_cls`` hooks. Ray Serve LLM (with
  ``log_engine_metrics``) swaps in vLLM's ``RayPrometheusStatLogger``, whose
  wrappers sanitize the name (``vllm:x`` -> ``vllm_x``, the regex is read from
  ``ray_wrappers.py``) and hand it to ``ray.util.metrics``: ``ray_vllm_x``.
* rayllm_runtime: the families the gateway's prometheus_client registry
  really exposes (``GatewayMetrics().registry.collect()``).

Exposition suffixes: counters ``_total``, histograms ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

RAY_NAMESPACE_PREFIX = "ray_"
_KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@dataclass
class Catalog:
    exact: Set[str] = field(default_factory=set)
    patterns: List[re.Pattern] = field(default_factory=list)
    sources: Dict[str, str] = field(default_factory=dict)

    def add(self, base: str, kind: str, source: str) -> None:
        for suffix in _SUFFIXES[kind]:
            self.exact.add(base + suffix)
            self.sources[base + suffix] = source

    def add_pattern(self, regex: str, kind: str) -> None:
        for suffix in _SUFFIXES[kind]:
            self.patterns.append(re.compile(f"^{regex}{re.escape(suffix)}$"))

    def __contains__(self, name: str) -> bool:
        return name in self.exact or any(p.match(name) for p in self.patterns)


def _site_root(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec and spec.submodule_search_locations, f"{module} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def _name_arg(call: ast.Call) -> Optional[ast.AST]:
    for kw in call.keywords:
        if kw.arg == "name":
            return kw.value
    return call.args[0] if call.args else None


def _literal_or_regex(node: ast.AST) -> Tuple[Optional[str], Optional[str]]:
    """(exact name, None) for a string constant, (None, regex) for an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(re.escape(str(value.value)))
            else:
                parts.append("[a-z0-9]+")  # one word, e.g. a protocol name
        return None, "".join(parts)
    return None, None


def _ray_metrics_aliases(tree: ast.Module) -> Set[str]:
    """Local names of ``ray.util.metrics`` and of ``ray.serve.metrics`` (whose
    Counter/Gauge/Histogram subclass ray.util.metrics' and keep the name)."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("ray.util", "ray.serve"):
            for a in node.names:
                if a.name == "metrics":
                    aliases.add(a.asname or "metrics")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("ray.util.metrics", "ray.serve.metrics") and a.asname:
                    aliases.add(a.asname)
    return aliases


@functools.lru_cache(maxsize=None)
def ray_serve_catalog() -> Catalog:
    cat = Catalog()
    root = _site_root("ray.serve")
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = _ray_metrics_aliases(tree)
        if not aliases:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            func = node.func
            if func.attr in _KINDS and isinstance(func.value, ast.Name) and func.value.id in aliases:
                arg = _name_arg(node)
                exact, regex = _literal_or_regex(arg) if arg is not None else (None, None)
                kind = _KINDS[func.attr]
                if exact:
                    cat.add(RAY_NAMESPACE_PREFIX + exact, kind, str(path.relative_to(root.parent)))
                elif regex:
                    cat.add_pattern(re.escape(RAY_NAMESPACE_PREFIX) + regex, kind)
    return cat


def _vllm_sanitizer():
    """The name sanitizer of vLLM's Ray wrappers, read from its source."""
    path = _site_root("vllm") / "v1" / "metrics" / "ray_wrappers.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_get_sanitized_opentelemetry_name":
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "sub" and len(call.args) >= 2
                        and all(isinstance(a, ast.Constant) for a in call.args[:2])):
                    pattern, repl = call.args[0].value, call.args[1].value
                    return lambda name: re.sub(pattern, repl, name)
    raise AssertionError(f"no _get_sanitized_opentelemetry_name re.sub in {path}")


@functools.lru_cache(maxsize=None)
def vllm_ray_catalog() -> Catalog:
    cat = Catalog()
    sanitize = _vllm_sanitizer()
    hooks = {"_gauge_cls": "gauge", "_counter_cls": "counter", "_histogram_cls": "histogram"}
    path = _site_root("vllm") / "v1" / "metrics" / "loggers.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        kind = hooks.get(node.func.attr)
        if not kind:
            continue
        arg = _name_arg(node)
        exact, _ = _literal_or_regex(arg) if arg is not None else (None, None)
        if exact and exact.startswith("vllm:"):
            cat.add(RAY_NAMESPACE_PREFIX + sanitize(exact), kind, "vllm/v1/metrics/loggers.py")
    return cat


@functools.lru_cache(maxsize=None)
def rayllm_runtime_catalog() -> Catalog:
    from rayllm_runtime.metrics import GatewayMetrics

    cat = Catalog()
    for family in GatewayMetrics().registry.collect():
        kind = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}[family.type]
        cat.add(family.name, kind, "rayllm_runtime.metrics")
    return cat


def known(name: str) -> bool:
    return any(name in c for c in (ray_serve_catalog(), vllm_ray_catalog(), rayllm_runtime_catalog()))


# ---------------------------------------------------------------- PromQL names

_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}


def promql_metric_names(expr: str) -> Set[str]:
    """Metric names an expression selects (functions, keywords, labels and
    Grafana variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    text = re.sub(r"\{[^{}]*\}", "", text)                    # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                    # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):  # a function call
            continue
        if token.lower() in _PROMQL_KEYWORDS:
            continue
        prev = text[: m.start()]
        if prev and (prev[-1].isdigit() or prev[-1] == "."):  # part of a number like 1e3
            continue
        names.add(token)
    return names


def label_values_metric(query: str) -> Optional[str]:
    """The metric of a Grafana ``label_values(metric{...}, label)`` query."""
    m = re.match(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", query)
    return m.group(1) if m else None
