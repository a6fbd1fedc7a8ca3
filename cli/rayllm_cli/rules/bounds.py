"""RL005: replica and request bounds are ordered."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

from ..errors import ERROR, Finding
from .context import Context, as_dict
from .registry import rule


@rule("RL005", "replica and request bounds are ordered")
def rule_bounds(ctx: Context) -> Iterator[Finding]:
    groups: List[Tuple[Tuple[str, ...], Dict[str, Any]]] = [(("tiers", tname), t) for tname, t in ctx.tiers().items()]
    if ctx.system_group() is not None:
        groups.append((("systemGroup",), ctx.section("systemGroup")))
    for base_path, t in groups:
        lo, hi, start = t.get("minReplicas"), t.get("maxReplicas"), t.get("replicas")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield ctx.finding(
                "RL005",
                ERROR,
                base_path + ("minReplicas",),
                f"minReplicas {lo} > maxReplicas {hi}",
                lo,
                f"<= maxReplicas ({hi})",
                "lower minReplicas or raise maxReplicas",
            )
        elif isinstance(start, int) and isinstance(lo, int) and isinstance(hi, int) and not lo <= start <= hi:
            yield ctx.finding(
                "RL005",
                ERROR,
                base_path + ("replicas",),
                f"replicas {start} outside [{lo}, {hi}]",
                start,
                f"between minReplicas ({lo}) and maxReplicas ({hi})",
                "fix replicas or leave it unset (it defaults to minReplicas)",
            )
    for name, m in ctx.models().items():
        dc = as_dict(m.get("deployment_config"))
        auto = as_dict(dc.get("autoscaling_config"))
        base = ("models", name, "deployment_config")
        lo, hi, init = auto.get("min_replicas"), auto.get("max_replicas"), auto.get("initial_replicas")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield ctx.finding(
                "RL005",
                ERROR,
                base + ("autoscaling_config", "min_replicas"),
                f"min_replicas {lo} > max_replicas {hi}",
                lo,
                f"<= max_replicas ({hi})",
                "lower min_replicas or raise max_replicas",
            )
        if isinstance(init, int) and isinstance(lo, int) and isinstance(hi, int) and not lo <= init <= hi:
            yield ctx.finding(
                "RL005",
                ERROR,
                base + ("autoscaling_config", "initial_replicas"),
                f"initial_replicas {init} outside [{lo}, {hi}]",
                init,
                f"between {lo} and {hi}",
                "fix initial_replicas or remove it",
            )
        if dc.get("autoscaling_config") is not None and dc.get("num_replicas") is not None:
            yield ctx.finding(
                "RL005",
                ERROR,
                base + ("num_replicas",),
                "both num_replicas and autoscaling_config: Serve takes one",
                dc.get("num_replicas"),
                "one of them",
                "remove num_replicas to autoscale, or autoscaling_config for a fixed count",
            )
        target, mor = auto.get("target_ongoing_requests"), dc.get("max_ongoing_requests")
        if isinstance(target, (int, float)) and isinstance(mor, (int, float)) and target > mor:
            yield ctx.finding(
                "RL005",
                ERROR,
                base + ("autoscaling_config", "target_ongoing_requests"),
                f"target_ongoing_requests {target} > max_ongoing_requests {mor}: replicas never see "
                "that many requests, so the autoscaler never scales up",
                target,
                f"<= {mor}",
                "lower target_ongoing_requests or raise max_ongoing_requests",
            )
