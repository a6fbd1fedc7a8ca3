"""Serving features that span several values: the model cache, LoRA adapters, request routers.

RL019: a model that loads from the cache volume has the volume (enabled, mounted on its tier,
       a Hub id to pre-pull); the claim's access mode suits the nodes that mount it.
RL020: LoRA is configured in one place, with the engine switches vLLM needs for it.
RL021: a request router Ray ships gets only the arguments its initialize_state takes.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, Optional, Tuple

from rayllm_schemas.values import HUB_ID_PATTERN, LORA_URI_PATTERN

from ..errors import ERROR, NOTICE, WARNING, Finding
from .context import Context, as_dict, as_int, replica_bounds
from .registry import rule

HUB_ID = re.compile(HUB_ID_PATTERN)
LORA_URI = re.compile(LORA_URI_PATTERN)

#: initialize_state arguments of the request routers Ray 2.59+ ships (request_router_kwargs go
#: there; an unknown one fails every request at the router, not the deploy).
#: tests/pods/test_request_routers.py compares this table with the pods' Ray.
#: None: the router takes **kwargs and picks what it knows, so its arguments are not checked.
RAY_REQUEST_ROUTERS: Dict[str, Optional[Tuple[str, ...]]] = {
    "ray.serve.llm.request_router:PrefixCacheAffinityRouter": (
        "imbalanced_threshold",
        "match_rate_threshold",
        "do_eviction",
        "eviction_threshold_chars",
        "eviction_target_chars",
        "eviction_interval_secs",
        "tree_actor",
    ),
    "ray.serve._private.request_router:PowerOfTwoChoicesRequestRouter": None,
    "ray.serve.experimental.round_robin_router:RoundRobinRouter": None,
    "ray.serve.experimental.consistent_hash_router:ConsistentHashRouter": None,
}
#: Arguments that only make sense in Ray's own tests (an actor handle cannot be written in YAML).
NOT_IN_VALUES = {"tree_actor"}


def canonical_router(path: str) -> str:
    """``module.Attr`` and ``module:Attr`` name the same class (Ray accepts both)."""
    if ":" in path:
        return path
    module, _, attr = path.rpartition(".")
    return f"{module}:{attr}"


def _cache(ctx: Context) -> Dict[str, Any]:
    return ctx.section("modelCache")


def cache_mount(ctx: Context) -> str:
    mount = _cache(ctx).get("mountPath")
    return (mount if isinstance(mount, str) and mount.startswith("/") else "/models").rstrip("/")


def uses_cache(ctx: Context, model: Dict[str, Any]) -> bool:
    """Cached, or a model_source on the cache volume's path (as the chart decides which tiers mount it)."""
    source = as_dict(model.get("model_loading_config")).get("model_source")
    return model.get("cached") is True or (isinstance(source, str) and source.startswith(cache_mount(ctx) + "/"))


def cache_source(model: Dict[str, Any]) -> Optional[str]:
    loading = as_dict(model.get("model_loading_config"))
    source = loading.get("model_source") or loading.get("model_id")
    return source if isinstance(source, str) else None


@rule("RL019", "a model that loads from the model cache has the volume", in_template=True)
def rule_model_cache(ctx: Context) -> Iterator[Finding]:
    cache = _cache(ctx)
    enabled = cache.get("enabled") is True
    tiers = ctx.tiers()
    mount = cache_mount(ctx)
    nodes = 0
    for name, m in ctx.models().items():
        if not uses_cache(ctx, m):
            continue
        where = (
            ("models", name, "cached")
            if m.get("cached") is True
            else ("models", name, "model_loading_config", "model_source")
        )
        if not enabled:
            yield ctx.finding(
                "RL019",
                ERROR,
                where,
                f"weights from the model cache ({mount}) with modelCache disabled: no pod mounts that path, so "
                "the engine cannot find them",
                m.get("cached") if m.get("cached") is True else cache_source(m),
                "modelCache.enabled: true",
                "set modelCache.enabled: true (with existingClaim or a size and storageClassName), "
                "or load from the Hub",
            )
            continue
        tier = tiers.get(str(m.get("tier")))
        if isinstance(tier, dict) and tier.get("modelCache") is False:
            yield ctx.finding(
                "RL019",
                ERROR,
                ("models", name, "tier"),
                f"a model that loads from the model cache on tier {m.get('tier')!r}, which opts out of the cache "
                "volume (modelCache: false)",
                m.get("tier"),
                "a tier that mounts the cache",
                f"place the model on another tier, or remove tiers.{m.get('tier')}.modelCache: false",
            )
        elif isinstance(tier, dict):
            nodes += max(1, as_int(tier.get("maxReplicas"), 1))
        source = cache_source(m)
        if m.get("cached") is True and not (source and HUB_ID.match(source)):
            yield ctx.finding(
                "RL019",
                ERROR,
                ("models", name, "model_loading_config", "model_source"),
                "a cached model whose source is not a Hugging Face id: the pre-pull Job downloads Hub ids into "
                f"{mount}/<id>",
                source,
                "a Hub id such as Qwen/Qwen2.5-7B-Instruct",
                "set model_source to the Hub id, or drop `cached` and point model_source at the volume or a bucket",
            )
    modes = cache.get("accessModes")
    if (
        enabled
        and not cache.get("existingClaim")
        and isinstance(modes, list)
        and nodes > 1
        and not {"ReadWriteMany", "ReadOnlyMany"} & set(modes)
    ):
        yield ctx.finding(
            "RL019",
            WARNING,
            ("modelCache", "accessModes"),
            f"a claim that only one node can mount ({', '.join(map(str, modes))}), for up to {nodes} worker pods "
            "that load from it: workers scheduled on another node stay Pending",
            modes,
            "ReadWriteMany (or ReadOnlyMany for a volume filled elsewhere)",
            "use a ReadWriteMany storage class (EFS, Filestore, Azure Files, CephFS), or existingClaim",
        )


ENGINE_SWITCHES = ("enable_lora", "max_lora_rank", "max_loras", "max_cpu_loras")


@rule("RL020", "LoRA adapters are configured in one place, with vLLM's switches", in_template=True)
def rule_lora(ctx: Context) -> Iterator[Finding]:
    for name, m in ctx.models().items():
        lora, raw = m.get("lora"), m.get("lora_config")
        engine = as_dict(m.get("engine_kwargs"))
        if isinstance(lora, dict) and raw:
            yield ctx.finding(
                "RL020",
                ERROR,
                ("models", name, "lora_config"),
                "LoRA configured twice: `lora` renders Ray's lora_config itself",
                "lora_config",
                "either `lora` (which also sets vLLM's switches) or Ray's lora_config verbatim",
                f"remove models.{name}.lora_config",
            )
            continue
        if isinstance(lora, dict):
            if engine.get("enable_lora") is False:
                yield ctx.finding(
                    "RL020",
                    ERROR,
                    ("models", name, "engine_kwargs", "enable_lora"),
                    "adapters configured (`lora`) with LoRA switched off in the engine: every adapter request fails",
                    False,
                    "enable_lora unset (the chart sets it) or true",
                    f"remove models.{name}.engine_kwargs.enable_lora",
                )
            rank = engine.get("max_lora_rank")
            if rank is not None and rank != lora.get("maxLoraRank", 16):
                yield ctx.finding(
                    "RL020",
                    WARNING,
                    ("models", name, "engine_kwargs", "max_lora_rank"),
                    f"engine_kwargs.max_lora_rank {rank} overrides lora.maxLoraRank {lora.get('maxLoraRank', 16)}",
                    rank,
                    "one of them",
                    "set the rank in lora.maxLoraRank only",
                )
        elif isinstance(raw, dict):
            path = raw.get("dynamic_lora_loading_path")
            if isinstance(path, str) and not LORA_URI.match(path):
                yield ctx.finding(
                    "RL020",
                    ERROR,
                    ("models", name, "lora_config", "dynamic_lora_loading_path"),
                    "an adapter location Ray Serve LLM cannot load from (its LoraConfig accepts bucket URIs only)",
                    path,
                    "s3://, gs://, abfss:// or azure:// URI",
                    "upload the adapters to a bucket (or an S3-compatible store such as MinIO) and point here",
                )
            if engine.get("enable_lora") is not True:
                yield ctx.finding(
                    "RL020",
                    ERROR,
                    ("models", name, "engine_kwargs", "enable_lora"),
                    "Ray's lora_config without vLLM's enable_lora: Ray sets no engine switch itself, so every "
                    "adapter request fails",
                    engine.get("enable_lora"),
                    "enable_lora: true (and max_lora_rank, max_loras)",
                    f"use models.{name}.lora instead of lora_config (it sets them), or add them to engine_kwargs",
                )


@rule("RL021", "a request router Ray ships gets only the arguments it takes")
def rule_request_router(ctx: Context) -> Iterator[Finding]:
    for name, m in ctx.models().items():
        dc = as_dict(m.get("deployment_config"))
        cfg = dc.get("request_router_config")
        if not isinstance(cfg, dict):
            continue
        base = ("models", name, "deployment_config", "request_router_config")
        cls = cfg.get("request_router_class")
        if not isinstance(cls, str):
            continue
        shipped = canonical_router(cls) in RAY_REQUEST_ROUTERS
        known = RAY_REQUEST_ROUTERS.get(canonical_router(cls))
        kwargs = as_dict(cfg.get("request_router_kwargs"))
        if not shipped:
            if cls.startswith("ray."):
                yield ctx.finding(
                    "RL021",
                    WARNING,
                    base + ("request_router_class",),
                    "a router path under ray. that is not one of the routers Ray ships",
                    cls,
                    ", ".join(sorted(RAY_REQUEST_ROUTERS)),
                    "check the spelling; Serve imports the class when the app deploys and fails the deploy if absent",
                )
            else:
                yield ctx.finding(
                    "RL021",
                    NOTICE,
                    base + ("request_router_class",),
                    "a router of your own: Serve imports it when the app deploys (it must be in the image or the "
                    "app's runtime_env); its arguments are not checked here",
                    cls,
                )
            continue
        for key in kwargs:  # known None: the router takes **kwargs, nothing to check
            if known is not None and (key not in known or key in NOT_IN_VALUES):
                yield ctx.finding(
                    "RL021",
                    ERROR,
                    base + ("request_router_kwargs", key),
                    f"an argument {cls.split(':')[-1].split('.')[-1]}.initialize_state does not take: the router "
                    "fails on the first request, after the deploy went through",
                    key,
                    ", ".join(k for k in known if k not in NOT_IN_VALUES),
                    "remove it or fix its name",
                )
        if canonical_router(cls).endswith(":PrefixCacheAffinityRouter"):
            engine = as_dict(m.get("engine_kwargs"))
            if engine.get("enable_prefix_caching") is False:
                yield ctx.finding(
                    "RL021",
                    WARNING,
                    ("models", name, "engine_kwargs", "enable_prefix_caching"),
                    "prefix-cache affinity routing with vLLM's prefix cache switched off: the router keeps "
                    "prompts on a replica that cannot reuse them",
                    False,
                    "enable_prefix_caching unset or true",
                    "remove enable_prefix_caching: false, or use Serve's default router",
                )
            if replica_bounds(m)[1] <= 1:
                yield ctx.finding(
                    "RL021",
                    NOTICE,
                    base + ("request_router_class",),
                    "prefix-cache affinity routing for a model with at most one replica: there is nothing to choose "
                    "between until max_replicas > 1",
                    cls,
                )
