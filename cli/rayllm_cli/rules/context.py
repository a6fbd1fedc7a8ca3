"""The merged values as the rules read them: plain data, defensive (the schema may have failed
elsewhere), with the finding factory that attaches each value's file and line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from rayllm_schemas.secret_patterns import SECRET_POINTER_NAME, SECRETISH_ENV_NAME, TOKEN_FORMATS

from ..errors import Finding, format_path, mask
from ..merge import Merged

SECRETISH_NAME = re.compile(SECRETISH_ENV_NAME)
POINTER_NAME = re.compile(SECRET_POINTER_NAME)
TOKEN_PATTERNS = [(re.compile(pattern), what) for what, pattern in TOKEN_FORMATS]
ANY_TOKEN = re.compile("|".join(f"(?:{pattern})" for _, pattern in TOKEN_FORMATS))

# Numbers beyond 2^53 are already errors (Helm cannot keep them); the rules treat them as unset
# instead of overflowing float arithmetic (1e308 GPUs, a 400-digit --set value).
_SANE = 2**53


@dataclass
class Context:
    values: Dict[str, Any]
    merged: Optional[Merged] = None
    #: `helm install <release>`: validate --release / lint --release; None when not given.
    release: Optional[str] = None

    def origin(self, path: Sequence[Any]) -> str:
        return self.merged.origin(path) if self.merged else ""

    def finding(
        self,
        rule: str,
        severity: str,
        path: Sequence[Any],
        message: str,
        value: Any = None,
        expected: str = "",
        fix: str = "",
    ) -> Finding:
        return Finding(
            rule=rule,
            severity=severity,
            path=format_path(path),
            message=message,
            value=value,
            expected=expected,
            fix=fix,
            origin=self.origin(path),
        )

    # ---- views of the data
    def section(self, key: str) -> Dict[str, Any]:
        val = self.values.get(key)
        return val if isinstance(val, dict) else {}

    def tiers(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("tiers").items() if isinstance(v, dict)}

    def enabled_tiers(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.tiers().items() if not v.get("disabled")}

    def models(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("models").items() if isinstance(v, dict) and not v.get("disabled")}

    def custom_apps(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("customApps").items() if isinstance(v, dict) and not v.get("disabled")}

    def llm_apps(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("llmApps").items() if isinstance(v, dict)}

    def system_group(self) -> Optional[Dict[str, Any]]:
        group = self.section("systemGroup")
        return group if group.get("enabled") is True else None


def as_dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_int(value: Any, default: int) -> int:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return value if abs(value) <= _SANE else default
    if isinstance(value, float) and value.is_integer() and abs(value) <= _SANE:
        return int(value)
    return default


def as_num(value: Any, default: float) -> float:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)) and abs(value) <= _SANE:
        return float(value)
    return default


def parallel(model: Dict[str, Any]) -> Tuple[int, int]:
    ek = as_dict(model.get("engine_kwargs"))
    return max(1, as_int(ek.get("tensor_parallel_size"), 1)), max(1, as_int(ek.get("pipeline_parallel_size"), 1))


def gpus_per_replica(model: Dict[str, Any]) -> float:
    tp, pp = parallel(model)
    share = as_num(model.get("gpuShare"), 1.0)
    return tp * pp * (share if tp * pp == 1 else 1.0)


def replica_bounds(model: Dict[str, Any]) -> Tuple[int, int]:
    """(min, max) replicas as Ray Serve reads deployment_config (defaults 1/1; num_replicas when not autoscaling)."""
    dc = as_dict(model.get("deployment_config"))
    auto = dc.get("autoscaling_config")
    num = dc.get("num_replicas")
    if isinstance(auto, dict):
        lo = as_int(auto.get("min_replicas"), 1)
        hi = as_int(auto.get("max_replicas"), max(1, lo))
        return lo, hi
    if num == "auto":
        return 1, 100
    n = as_int(num, 1)
    return n, n


def tier_gpus(tier: Dict[str, Any]) -> int:
    return max(1, as_int(tier.get("gpusPerWorker"), 1))


def normalise_prefix(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def walk(value: Any, path: Tuple[Any, ...]) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, path + (i,))


def strings(value: Any) -> Iterator[Tuple[Tuple[Any, ...], str]]:
    """(path, string) for every string value, depth-first in document order (an explicit stack:
    no generator chain as deep as the values, which made every item cost O(depth))."""
    stack: List[Tuple[Tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, val = stack.pop()
        if isinstance(val, str):
            yield path, val
        elif isinstance(val, dict):
            stack.extend(reversed([(path + (k,), v) for k, v in val.items()]))
        elif isinstance(val, list):
            stack.extend(reversed([(path + (i,), v) for i, v in enumerate(val)]))


def get(data: Any, path: Sequence[Any]) -> Any:
    cur = data
    for p in path:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            cur = cur[p]
        else:
            return None
    return cur


def secretish_env_name(name: Any) -> bool:
    text = str(name)
    return bool(SECRETISH_NAME.search(text)) and not POINTER_NAME.search(text)


def redact(value: Any, path: Sequence[Any]) -> Any:
    """A value fit to print: masked when it may be a secret, shortened when it is big."""
    if any(isinstance(p, str) and SECRETISH_NAME.search(p) for p in path) and isinstance(value, (str, int, float)):
        return mask(value)
    if isinstance(value, str) and ANY_TOKEN.search(value):
        return mask(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        if len(text) > 120:
            return text[:117] + "..."
        return value
    return value
