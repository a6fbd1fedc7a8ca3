"""Where replicas land.

RL003: an engine's GPU bundles fit one worker of its tier; accelerator_type is the tier's.
RL004: a tier's workers hold its models at min and max replicas.
RL014: every CPU-only replica has a CPU node to land on (the head or the system group), never a GPU tier.
RL015: every Ray group carries CPU and memory, which Ray's autoscaler sizes it by.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Iterator, List, Optional, Tuple

from rayllm_schemas.schema_gen import entry_defaults
from rayllm_schemas.values import SystemGroupValues, TierValues

from ..errors import ERROR, Finding
from .context import Context, as_dict, as_int, as_num, gpus_per_replica, parallel, replica_bounds, tier_gpus
from .references import GATEWAY_BUILDER
from .registry import rule


@rule("RL003", "engine parallelism and GPU shares fit the tier's workers", in_template=True)
def rule_placement(ctx: Context) -> Iterator[Finding]:
    tiers = ctx.enabled_tiers()
    fractional: Dict[str, List[Tuple[str, float]]] = {}
    for name, m in ctx.models().items():
        tier_name = m.get("tier")
        tier = tiers.get(tier_name) if isinstance(tier_name, str) else None
        if tier is None:
            continue
        tp, pp = parallel(m)
        per_worker = tier_gpus(tier)
        if tp * pp > per_worker:
            key = (
                "tensor_parallel_size"
                if "tensor_parallel_size" in as_dict(m.get("engine_kwargs"))
                else "pipeline_parallel_size"
            )
            yield ctx.finding(
                "RL003",
                ERROR,
                ("models", name, "engine_kwargs", key),
                f"tensor_parallel_size x pipeline_parallel_size = {tp}x{pp} = {tp * pp} GPUs per engine, "
                f"but tier {m['tier']!r} has {per_worker} GPU(s) per worker (an engine's bundles must fit one worker)",
                tp * pp,
                f"at most {per_worker}",
                "move the model to a tier with more gpusPerWorker or lower the parallel sizes",
            )
        own = m.get("accelerator_type")
        if own is not None and str(own) != str(tier.get("acceleratorType")):
            # The chart derives accelerator_type from the tier; a different one
            # could never be placed on that tier's workers.
            yield ctx.finding(
                "RL003",
                ERROR,
                ("models", name, "accelerator_type"),
                f"accelerator_type {own!r} differs from tier {m['tier']!r}'s acceleratorType",
                own,
                f"tier {m['tier']!r}'s {tier.get('acceleratorType')!r} (or unset)",
                "remove it: the chart sets it from the tier",
            )
        share = as_num(m.get("gpuShare"), 1.0)
        if share < 1 and tp * pp == 1:
            lo, _ = replica_bounds(m)
            fractional.setdefault(m["tier"], []).append((name, share * lo))
        elif share < 1:
            yield ctx.finding(
                "RL003",
                ERROR,
                ("models", name, "gpuShare"),
                f"gpuShare {share:g} on an engine of {tp * pp} GPUs (tensor x pipeline parallel)",
                share,
                "gpuShare 1 for multi-GPU engines",
                "set gpuShare: 1, or the parallel sizes to 1",
            )
    for tname, items in fractional.items():
        tier = tiers[tname]
        total = sum(x for _, x in items)
        # Fractional engines share GPUs only within one worker: with maxReplicas <= 1 they must all co-locate.
        if as_int(tier.get("maxReplicas"), 1) <= 1 and total > tier_gpus(tier) + 1e-9:
            names = ", ".join(f"{n} ({x:g})" for n, x in items)
            yield ctx.finding(
                "RL003",
                ERROR,
                ("tiers", tname, "gpusPerWorker"),
                f"fractional models must co-locate on tier {tname!r}'s single worker and need "
                f"{total:g} GPUs at min replicas ({names})",
                total,
                f"sum of gpuShare x min_replicas <= gpusPerWorker ({tier_gpus(tier)})",
                "lower gpuShare/min_replicas, raise gpusPerWorker or maxReplicas, or move a model",
            )


@rule("RL004", "the tier's GPUs cover its models at min and max replicas")
def rule_capacity(ctx: Context) -> Iterator[Finding]:
    tiers = ctx.enabled_tiers()
    per_tier: Dict[str, List[Tuple[str, float, int, int]]] = {}
    for name, m in ctx.models().items():
        if isinstance(m.get("tier"), str) and m["tier"] in tiers:
            lo, hi = replica_bounds(m)
            per_tier.setdefault(m["tier"], []).append((name, gpus_per_replica(m), lo, hi))
    for tname, items in per_tier.items():
        tier = tiers[tname]
        capacity = as_int(tier.get("maxReplicas"), 1) * tier_gpus(tier)
        at_min = sum(g * lo for _, g, lo, _ in items)
        at_max = sum(g * hi for _, g, _, hi in items)
        detail = ", ".join(f"{n}: {g:g} GPU x {lo}..{hi}" for n, g, lo, hi in items)
        if at_min > capacity + 1e-9:
            yield ctx.finding(
                "RL004",
                ERROR,
                ("tiers", tname, "maxReplicas"),
                f"models need {at_min:g} GPUs at their min_replicas but tier {tname!r} has at most "
                f"{capacity} (maxReplicas x gpusPerWorker); these replicas can never all be scheduled ({detail})",
                tier.get("maxReplicas"),
                f"maxReplicas x gpusPerWorker >= {at_min:g}",
                "raise the tier's maxReplicas/gpusPerWorker or lower the models' min_replicas",
            )
        elif at_max > capacity + 1e-9:
            yield ctx.finding(
                "RL004",
                ERROR,
                ("tiers", tname, "maxReplicas"),
                f"models may scale to {at_max:g} GPUs at max_replicas but tier {tname!r} has at most "
                f"{capacity} (maxReplicas x gpusPerWorker); replicas above that stay pending ({detail})",
                tier.get("maxReplicas"),
                f"maxReplicas x gpusPerWorker >= {at_max:g}",
                "raise the tier's maxReplicas or lower the models' max_replicas",
            )


# --------------------------------------------------------------------------- CPUs of a group

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")


def cpu_quantity(value: Any) -> Optional[float]:
    """A Kubernetes CPU quantity in cores ("500m" -> 0.5); None when unset or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    return float(number / 1000) if match.group(2) == "m" else float(number)


def container_cpus(resources: Any) -> Optional[float]:
    """The CPUs Ray sees for a container: KubeRay passes the limit (else the request) as num-cpus."""
    res = as_dict(resources)
    for kind in ("limits", "requests"):
        cpus = cpu_quantity(as_dict(res.get(kind)).get("cpu"))
        if cpus is not None:
            return cpus
    return None


def head_cpus(ctx: Context) -> Optional[float]:
    head = ctx.section("head")
    if head.get("numCpus") is not None and not isinstance(head.get("numCpus"), bool):
        return as_num(head.get("numCpus"), 0.0)
    return container_cpus(head.get("resources"))


def group_resources(entry: Dict[str, Any], defaults_of: type) -> Any:
    """A group's container resources as rendered: its own, or the model's default when it sets none."""
    if entry.get("resources") is not None:
        return entry["resources"]
    return entry_defaults(defaults_of).get("resources")


def cpu_only_target(ctx: Context) -> Tuple[str, Optional[float]]:
    """(where CPU-only replicas are pinned, the CPUs one node there offers; None = unknown)."""
    system = ctx.system_group()
    if system is not None:
        return "the system group (rayllm-system)", container_cpus(group_resources(system, SystemGroupValues))
    return "the head (rayllm-head)", head_cpus(ctx)


def cpu_only_replicas(ctx: Context) -> Iterator[Tuple[Tuple[Any, ...], float, bool]]:
    """(values path of the replica's num_cpus, CPUs it asks, whether the chart pins it) for each CPU-only
    replica of the runtime's gateway apps: the ingress and the models without GPUs."""
    for name, app in ctx.custom_apps().items():
        if app.get("import_path") != GATEWAY_BUILDER:
            continue
        args = as_dict(app.get("args"))
        pinned = not args.get("cpu_placement")  # the chart fills cpu_placement unless the user set it
        base = ("customApps", name, "args")
        ingress = as_dict(as_dict(args.get("ingress_deployment")).get("ray_actor_options"))
        if not ingress.get("num_gpus"):
            yield (
                base + ("ingress_deployment", "ray_actor_options", "num_cpus"),
                as_num(ingress.get("num_cpus"), 0.0),
                pinned and not ingress.get("resources"),
            )
        models = args.get("models")
        for index, model in enumerate(models if isinstance(models, list) else []):
            model = as_dict(model)
            actor = as_dict(as_dict(model.get("deployment")).get("ray_actor_options"))
            if model.get("colocated") or actor.get("num_gpus"):
                continue
            # Serve gives a replica 1 CPU unless ray_actor_options say otherwise.
            yield (
                base + ("models", index, "deployment", "ray_actor_options", "num_cpus"),
                as_num(actor.get("num_cpus"), 1.0),
                pinned and not actor.get("resources"),
            )


@rule("RL014", "CPU-only replicas land on the head or the system group, never on a GPU tier")
def rule_cpu_only_placement(ctx: Context) -> Iterator[Finding]:
    target, offered = cpu_only_target(ctx)
    for path, asks, pinned in cpu_only_replicas(ctx):
        if asks <= 0:
            continue
        if pinned and offered is not None and asks > offered + 1e-9:
            yield ctx.finding(
                "RL014",
                ERROR,
                path,
                f"this CPU-only replica asks {asks:g} CPU(s); the chart pins CPU-only replicas to {target}, "
                f"which offers {offered:g}, so it can never start",
                asks,
                f"at most {offered:g} CPUs",
                "enable systemGroup (a CPU pool for such replicas), give the head CPUs (head.numCpus), "
                "or set num_cpus: 0 for a replica that needs no reserved CPU",
            )
        elif not pinned and head_cpus(ctx) == 0 and ctx.system_group() is None:
            yield ctx.finding(
                "RL014",
                ERROR,
                path,
                f"this CPU-only replica asks {asks:g} CPU(s) with placement resources of its own; the head "
                "offers no CPUs and there is no system group, so it can only land on a GPU tier, whose node then "
                "stays up for a CPU-only process (no scale to zero)",
                asks,
                "a CPU node for CPU-only replicas",
                "enable systemGroup, or remove its own `resources` (and cpu_placement) so the chart pins it",
            )


@rule("RL015", "every Ray group carries CPU and memory (Ray's autoscaler sizes groups by them)", in_template=True)
def rule_group_resources(ctx: Context) -> Iterator[Finding]:
    groups: List[Tuple[Tuple[Any, ...], Any]] = [
        (("tiers", name, "resources"), group_resources(t, TierValues)) for name, t in ctx.enabled_tiers().items()
    ]
    system = ctx.system_group()
    if system is not None:
        groups.append((("systemGroup", "resources"), group_resources(system, SystemGroupValues)))
    for path, resources in groups:
        res = as_dict(resources)
        missing = [
            what
            for what in ("cpu", "memory")
            if not any(as_dict(res.get(kind)).get(what) not in (None, "") for kind in ("limits", "requests"))
        ]
        if missing:
            yield ctx.finding(
                "RL015",
                ERROR,
                path,
                f"no {' and no '.join(missing)} request or limit: Ray's autoscaler sizes each worker group from "
                "them and, without CPU, fails at start for the whole cluster ('failed to detect `CPU` resources')",
                resources,
                "requests or limits with cpu and memory",
                "set resources.limits (and requests) with cpu and memory, or leave `resources` out for the defaults",
            )
