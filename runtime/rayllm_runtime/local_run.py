"""Run a rendered serveConfigV2 on a local Ray (laptop, CI, no Kubernetes).

Usage::

    from rayllm_runtime.local_run import run_serve_config, shutdown
    result = run_serve_config(serve_config_v2_dict, port=8000)
    print(result.base_url, result.notices)
    ...
    shutdown()

Each application is built from its ``import_path`` with its ``args`` exactly
as Serve does in a cluster (a builder annotated with a pydantic model gets
its args validated). With ``cpu_fallback`` and no CUDA GPU, applications of
``ray.serve.llm:build_openai_app`` or the chart's
``rayllm_runtime.serve_llm:build_openai_app`` (which need vLLM on a GPU) are replaced by
``rayllm_runtime.apps:build_gateway`` serving the same model ids through the
transformers ``cpu`` engine; every such replacement is reported in
``LocalRunResult.notices`` and logged at WARNING.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

logger = logging.getLogger("rayllm.local_run")

OPENAI_APP_IMPORT_PATH = "ray.serve.llm:build_openai_app"
#: Builders that need vLLM on a GPU and get the CPU fallback; the chart's
#: verified wrapper takes the same llm_configs.
OPENAI_APP_IMPORT_PATHS = frozenset({OPENAI_APP_IMPORT_PATH, "rayllm_runtime.serve_llm:build_openai_app",
                                     "rayllm_runtime.serve_llm:build_llm_app"})
GATEWAY_IMPORT_PATH = "rayllm_runtime.apps:build_gateway"


class LocalRunError(RuntimeError):
    """The serve config cannot be run locally (message says what to change)."""


@dataclass
class LocalRunResult:
    base_url: str
    applications: List[str] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)
    replaced: Dict[str, List[str]] = field(default_factory=dict)


_started_ray = False


def gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _load_llm_config(entry: Any, base_dir: Path) -> Dict[str, Any]:
    if isinstance(entry, Mapping):
        return dict(entry)
    if isinstance(entry, (str, os.PathLike)):
        import yaml

        path = Path(entry)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise LocalRunError(
                f"got llm_configs entry {str(entry)!r}; expected a readable YAML file (looked at {path}); "
                "fix the path or pass base_dir"
            )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise LocalRunError(f"got {path} holding {type(data).__name__}; expected a mapping (an LLMConfig)")
        return data
    # An LLMConfig object (or anything pydantic) works too.
    dump = getattr(entry, "model_dump", None)
    if dump is not None:
        return dump()
    raise LocalRunError(f"got llm_configs entry of type {type(entry).__name__}; expected a path or a mapping")


def openai_app_to_gateway_args(
    args: Mapping[str, Any],
    *,
    model_overrides: Optional[Mapping[str, str]] = None,
    base_dir: Optional[Path] = None,
    cpu_engine_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Translate build_openai_app args (llm_configs) into GatewayArgs for the cpu engine.

    vLLM engine_kwargs and GPU deployment options do not apply on CPU and are
    dropped; each model gets one replica of the ``cpu`` engine.
    """
    overrides = dict(model_overrides or {})
    base = base_dir or Path.cwd()
    configs = list(args.get("llm_configs") or []) + ([args["llm_config"]] if args.get("llm_config") else [])
    if not configs:
        raise LocalRunError("got build_openai_app args without llm_configs; expected at least one LLMConfig")
    models = []
    for entry in configs:
        cfg = _load_llm_config(entry, base)
        loading = cfg.get("model_loading_config") or {}
        model_id = loading.get("model_id")
        if not model_id:
            raise LocalRunError("got an LLMConfig without model_loading_config.model_id; expected one; add it")
        source = overrides.get(model_id) or loading.get("model_source") or model_id
        if not isinstance(source, str):
            raise LocalRunError(
                f"got model_source of type {type(source).__name__} for {model_id!r} (e.g. a bucket_uri); "
                f"expected a local path or repo id for CPU fallback; pass model_overrides={{{model_id!r}: '/path'}}"
            )
        models.append(
            {
                "model_id": model_id,
                "engine": "cpu",
                "model_source": source,
                "engine_kwargs": dict(cpu_engine_kwargs or {}),
                "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5}},
            }
        )
    return {"models": models, "ingress_deployment": {"ray_actor_options": {"num_cpus": 0.1}}}


def _build_application(import_path: str, args: Dict[str, Any]):
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    target = import_attr(import_path)
    # Same code path Serve uses for serveConfigV2: pydantic-annotated builders
    # get their args validated.
    return call_user_app_builder_with_args_if_necessary(target, args)


def run_serve_config(
    serve_config: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    blocking: bool = False,
    cpu_fallback: bool = True,
    model_overrides: Optional[Mapping[str, str]] = None,
    num_cpus: Optional[int] = None,
    base_dir: Optional[os.PathLike] = None,
    use_gpu: Optional[bool] = None,
    ray_resources: Optional[Mapping[str, float]] = None,
    deploy_timeout_s: Optional[float] = None,
) -> LocalRunResult:
    """Deploy every application of a serveConfigV2 dict onto a local Ray.

    Args:
        serve_config: ``{"proxy_location", "http_options", "applications": [...]}``
            as the chart renders it. http_options host/port are replaced by
            ``host``/``port``; per-app ``runtime_env`` is not applied (the
            local interpreter already has the code) and is reported.
        blocking: wait until Ctrl-C, then shut down.
        cpu_fallback: replace build_openai_app apps by the CPU gateway when
            there is no GPU.
        model_overrides: model_id -> local path used by the CPU fallback.
        num_cpus: CPUs given to a Ray started here (default: all cores).
        base_dir: directory relative llm_configs paths are resolved against.
        use_gpu: force GPU detection on/off (default: torch.cuda.is_available()).
        ray_resources: custom resources for a Ray started here, e.g. the
            worker groups' ``rayllm-tier-*`` and ``accelerator_type:*`` so that
            placement bundles that ask for them schedule on this one node.
        deploy_timeout_s: fail with LocalRunError (naming the deployments still
            waiting and why) when the apps are not RUNNING after this long,
            instead of waiting forever (e.g. replicas asking for more CPUs than
            the local Ray has). None waits as ``serve.run`` does.
    Returns:
        LocalRunResult with the base URL, app names and notices.
    """
    global _started_ray
    import ray
    from ray import serve

    applications = list(serve_config.get("applications") or [])
    if not applications:
        raise LocalRunError("got a serve config without applications; expected at least one; render the chart first")
    have_gpu = gpu_available() if use_gpu is None else use_gpu
    base = Path(base_dir) if base_dir else Path.cwd()
    result = LocalRunResult(base_url=f"http://{host}:{port}")

    # Build (and validate) everything before deploying anything.
    built = []
    for index, spec in enumerate(applications):
        name = spec.get("name") or f"app{index}"
        import_path = spec.get("import_path")
        if not import_path:
            raise LocalRunError(f"got application {name!r} without import_path; expected module:attribute")
        args = dict(spec.get("args") or {})
        if import_path in OPENAI_APP_IMPORT_PATHS and cpu_fallback and not have_gpu:
            args = openai_app_to_gateway_args(args, model_overrides=model_overrides, base_dir=base)
            ids = [m["model_id"] for m in args["models"]]
            result.replaced[name] = ids
            notice = (
                f"application {name!r}: no CUDA GPU, so {import_path} was replaced by "
                f"{GATEWAY_IMPORT_PATH} serving {ids} on the transformers cpu engine (slow; for trying things out)"
            )
            result.notices.append(notice)
            logger.warning(notice)
            import_path = GATEWAY_IMPORT_PATH
        if spec.get("runtime_env"):
            result.notices.append(f"application {name!r}: runtime_env is not applied locally")
        built.append((name, spec.get("route_prefix", "/"), _build_application(import_path, args)))

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True,
                 resources=dict(ray_resources) if ray_resources else None)
        _started_ray = True
    serve.start(http_options={"host": host, "port": port})
    for name, route_prefix, app in built:
        if deploy_timeout_s is None:
            serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
        else:
            # serve._run(_blocking=False) submits without waiting (the public
            # serve.run waits for RUNNING with no bound); Ray 2.60 has it.
            from ray.serve.api import _run as serve_run

            serve_run(app, _blocking=False, name=name, route_prefix=route_prefix)
        result.applications.append(name)
    if deploy_timeout_s is not None:
        _wait_running(result.applications, deploy_timeout_s)
    logger.info("serving %s at %s", result.applications, result.base_url)

    if blocking:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            shutdown()
    return result


def _wait_running(names: List[str], timeout_s: float) -> None:
    """Poll Serve until every app is RUNNING; a failed or stuck deploy raises LocalRunError."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {n: apps.get(n) for n in names}
        failed = [n for n, a in states.items() if a is not None and str(a.status).endswith("DEPLOY_FAILED")]
        if failed:
            details = "; ".join(f"{n}: {states[n].message or 'no message'}" for n in failed)
            raise LocalRunError(f"got applications {failed} in DEPLOY_FAILED ({details}); expected RUNNING; "
                                "fix the app's args or model files")
        if all(a is not None and str(a.status).endswith("RUNNING") for a in states.values()):
            return
        if time.monotonic() > deadline:
            waiting = []
            for n, a in states.items():
                for dname, d in ((a.deployments if a else {}) or {}).items():
                    if not str(d.status).endswith("HEALTHY"):
                        waiting.append(f"{n}/{dname}: {(d.message or str(d.status))[:300]}")
            cpus = ray_cpus()
            raise LocalRunError(
                f"got applications not RUNNING after {timeout_s:g} s (waiting: {'; '.join(waiting) or 'unknown'}); "
                f"expected every replica scheduled; the local Ray has {cpus:g} CPU(s) for scheduling: raise "
                "--num-cpus (logical CPUs may exceed the machine's cores for a local trial) or disable models"
            )
        time.sleep(0.5)


def ray_cpus() -> float:
    import ray

    try:
        return float(ray.cluster_resources().get("CPU", 0.0))
    except Exception:  # only used in an error message
        return 0.0


def shutdown() -> None:
    """Delete the Serve applications and stop Ray if this module started it."""
    global _started_ray
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        if _started_ray and ray.is_initialized():
            ray.shutdown()
        _started_ray = False
