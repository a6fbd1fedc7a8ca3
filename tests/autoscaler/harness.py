"""One rendered release on the fake autoscaling cluster: render, lay out, deploy, observe.

What is replaced, and only that (each in :func:`prepare_serve_config`):

* the ConfigMaps and the API-key Secret are laid out locally where the head pod mounts
  them (``rayllm_cli``'s ``layout_release``), and the paths in serveConfigV2 point there;
* every LLMConfig gets ``server_cls`` = the test's LLMServer subclass (no weights) and
  shorter Serve autoscaling delays; its placement_group_config, accelerator_type,
  engine_kwargs and the rest of deployment_config stay as rendered. The edited file is
  written under a new content-addressed name, so the runtime's hash check still runs;
* Serve's HTTP host/port become loopback and a free port.

Every application is then built by Serve's own builder call and deployed with its
rendered name and route prefix.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import yaml

from tests.autoscaler.fake_cluster import (
    FakeKubeRayCluster,
    NodeView,
    actors_alive,
    alive_nodes,
    cluster_status,
    derive_autoscaling_config,
    fit_node_types,
    gpu_nodes,
)
from tests.autoscaler.fake_llm_server import FIXED_TEXT, SERVER_CLS

LLM_IMPORT_PATHS = {"ray.serve.llm:build_openai_app", "rayllm_runtime.serve_llm:build_openai_app",
                    "rayllm_runtime.serve_llm:build_llm_app"}
GATEWAY_IMPORT_PATH = "rayllm_runtime.apps:build_gateway"
HASHED_NAME = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{12})\.ya?ml$")

#: Serve autoscaling delays for the test (Serve's defaults: upscale 30 s, downscale 600 s,
#: look-back 30 s; the chart leaves them at Ray's defaults). Scale-from-zero takes Serve's
#: cold-start path whatever the delays; the short downscale delays let a replica go away
#: seconds after its last request instead of ten minutes.
TEST_SERVE_AUTOSCALING = {"upscale_delay_s": 0.0, "downscale_delay_s": 2.0, "downscale_to_zero_delay_s": 2.0,
                          "look_back_period_s": 2.0, "metrics_interval_s": 1.0}
#: Serve's metric push intervals (default 10 s each) for the cluster's processes: with the
#: short look-back above, a replica's last request leaves the window within ~2 s.
TEST_SERVE_ENV = {"RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
                  "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
                  # All fake nodes share this machine's network: with proxy_location EveryNode (as
                  # rendered) a proxy on a worker node would fail to bind the head proxy's port; 0
                  # gives each worker proxy a free port (in Kubernetes every pod has its own IP).
                  "RAY_SERVE_WORKER_PROXY_HTTP_PORT": "0",
                  # With proxy_location EveryNode (as rendered) Serve runs a proxy on every node
                  # that has a replica, GPU nodes included. When the node's last replica goes,
                  # Serve drains that proxy for at least 30 s, and the raylet reports the node
                  # busy ("Busy workers on node.") until the proxy is gone: the autoscaler's idle
                  # clock starts only then. Measured here: placement group removed at +4 s, node
                  # idle from +32 s, terminated at +42 s (8 s idle timeout). Same path, shorter.
                  "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "2"}


def layout_release(docs, root, secrets=None):
    """rayllm_cli's layout of the head pod's mounts (``ray-llm run``); its module was renamed once."""
    try:
        from rayllm_cli.run_command import layout_release as impl
    except ImportError:  # before the rename
        from rayllm_cli.serve_local import layout_release as impl
    return impl(docs, root, secrets)


def content_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def llm_config_paths(args: Mapping[str, Any]) -> List[str]:
    return [p for p in list(args.get("llm_configs") or []) + [args.get("llm_config")] if isinstance(p, str)]


def min_replicas_overlay(docs: Sequence[dict]) -> Dict[str, Any]:
    """A values overlay setting min_replicas 0 for every model that renders a floor above 0."""
    overlay: Dict[str, Any] = {}
    for d in docs:
        if d.get("kind") != "ConfigMap" or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "model-config":
            continue
        for key, text in (d.get("data") or {}).items():
            cfg = yaml.safe_load(text) or {}
            auto = (cfg.get("deployment_config") or {}).get("autoscaling_config") or {}
            if auto.get("min_replicas", 0) > 0:
                match = HASHED_NAME.match(key)
                model = match.group("stem") if match else key.rsplit(".", 1)[0]
                overlay.setdefault("models", {})[model] = {
                    "deployment_config": {"autoscaling_config": {"min_replicas": 0}}}
    return overlay


@dataclass
class Prepared:
    serve_config: Dict[str, Any]
    llm_configs: Dict[str, Dict[str, Any]]  # model_id -> edited LLMConfig dict
    model_apps: Dict[str, str]  # model_id -> Serve app holding its LLMServer
    rendered_llm_configs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # model_id -> as rendered
    changes: List[str] = field(default_factory=list)


def prepare_serve_config(docs: Sequence[dict], root: Path, api_key: str, http_port: int) -> Prepared:
    from tests.conftest import rayservice_of

    service = rayservice_of(list(docs))
    pod = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    rendered = yaml.safe_load(service["spec"]["serveConfigV2"])
    key_paths = {str(((a.get("args") or {}).get("auth") or {}).get("api_keys_path") or "").rstrip("/")
                 for a in rendered.get("applications", []) if a.get("import_path") == GATEWAY_IMPORT_PATH}
    secrets = {}
    keys = root / "api-keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "keys").write_text(api_key + "\n")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in pod["containers"][0].get("volumeMounts", []):
        secret = (volumes.get(mount["name"]) or {}).get("secret")
        if secret and str(mount["mountPath"]).rstrip("/") in key_paths:
            secrets[secret["secretName"]] = keys  # the test's key where the pod mounts the Secret
    layout = layout_release(list(docs), root / "pod", secrets)
    config = copy.deepcopy(layout.serve_config)
    out = Prepared(serve_config=config, llm_configs={}, model_apps={})
    edited_dir = root / "test-models"
    edited_dir.mkdir(parents=True, exist_ok=True)
    for app in config["applications"]:
        if app.get("import_path") not in LLM_IMPORT_PATHS:
            continue
        args = app.setdefault("args", {})
        replaced = {}
        for path in llm_config_paths(args):
            text = Path(path).read_text(encoding="utf-8")
            rendered_cfg = yaml.safe_load(text)
            cfg = copy.deepcopy(rendered_cfg)
            cfg["server_cls"] = SERVER_CLS
            cfg.setdefault("deployment_config", {}).setdefault("autoscaling_config", {}).update(TEST_SERVE_AUTOSCALING)
            new_text = yaml.safe_dump(cfg, sort_keys=False)
            stem = HASHED_NAME.match(Path(path).name).group("stem")
            new_path = edited_dir / f"{stem}.{content_digest(new_text)}.yaml"
            new_path.write_text(new_text, encoding="utf-8")
            replaced[path] = str(new_path)
            model_id = cfg["model_loading_config"]["model_id"]
            out.llm_configs[model_id] = cfg
            out.rendered_llm_configs[model_id] = rendered_cfg
            out.model_apps[model_id] = app["name"]
        if "llm_configs" in args:
            args["llm_configs"] = [replaced.get(p, p) for p in args["llm_configs"]]
        if isinstance(args.get("llm_config"), str):
            args["llm_config"] = replaced[args["llm_config"]]
    out.changes.append(f"LLMConfigs: server_cls={SERVER_CLS}, autoscaling_config += {TEST_SERVE_AUTOSCALING}")
    config["http_options"] = {**(config.get("http_options") or {}), "host": "127.0.0.1", "port": http_port}
    out.changes.append(f"http_options host/port -> 127.0.0.1:{http_port}")
    return out


def deploy(serve_config: Mapping[str, Any], timeout_s: float = 180.0) -> List[str]:
    """Build every app with Serve's own builder call (as `serve deploy`), deploy, wait for RUNNING."""
    from ray import serve
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    targets = []
    for spec in serve_config["applications"]:
        app = call_user_app_builder_with_args_if_necessary(import_attr(spec["import_path"]), spec.get("args") or {})
        targets.append(serve.RunTarget(target=app, name=spec["name"], route_prefix=spec.get("route_prefix", "/")))
    serve.start(proxy_location=serve_config.get("proxy_location"), http_options=dict(serve_config["http_options"]))
    serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    names = [t.name for t in targets]
    wait_for(lambda: _apps_running(names), timeout_s, "every application RUNNING")
    return names


def _apps_running(names: Sequence[str]) -> Tuple[bool, Any]:
    from ray import serve

    apps = serve.status().applications
    states = {n: (str(apps[n].status) if n in apps else "MISSING") for n in names}
    failed = {n: apps[n].message for n in names if n in apps and states[n].endswith("DEPLOY_FAILED")}
    if failed:
        raise AssertionError(f"applications failed to deploy: {failed}")
    return all(s.endswith("RUNNING") for s in states.values()), states


def wait_for(check: Callable[[], Tuple[bool, Any]], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        ok, last = check()
        if ok:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last seen: {last}")
        time.sleep(interval_s)


# -- observations -----------------------------------------------------------------------------
def replica_nodes() -> Dict[str, List[str]]:
    """Serve replica actor class name ("ServeReplica:<app>:<deployment>") -> node ids of its live replicas."""
    out: Dict[str, List[str]] = {}
    for actor in actors_alive():
        name = actor.get("ActorClassName") or ""
        if name.startswith("ServeReplica:"):
            out.setdefault(name, []).append(actor["Address"]["NodeID"])
    return out


def serve_replica_counts() -> Dict[str, int]:
    """'<app>/<deployment>' -> RUNNING replicas, from Serve's status."""
    from ray import serve

    counts = {}
    for app_name, app in serve.status().applications.items():
        for dep_name, dep in app.deployments.items():
            counts[f"{app_name}/{dep_name}"] = int((dep.replica_states or {}).get("RUNNING", 0))
    return counts


@dataclass
class Floor:
    nodes: List[NodeView]
    pending_launches: int
    pending_nodes: int
    demands: Any
    replicas: Dict[str, List[str]]
    serve_counts: Dict[str, int]
    seconds: float = 0.0


@dataclass
class ScaleUp:
    status: int
    body: Dict[str, Any]
    seconds: float
    kinds_seen: Set[str]  # node kinds alive at any poll while the request ran (and shortly after)
    max_nodes_per_kind: Dict[str, int]
    nodes_at_reply: List[NodeView]
    replicas_at_reply: Dict[str, List[str]]
    placement_groups: List[Dict[str, Any]]
    engine_placement: List[Dict[str, Any]]
    derived_bundles: List[Dict[str, float]]
    derived_strategy: str
    pending_after: Tuple[int, int]
    gpu_nodes_before: List[NodeView]


class NodeWatcher:
    """Polls the live nodes in the background; records every kind seen and the peak count per kind."""

    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.kinds: Set[str] = set()
        self.peak: Dict[str, int] = {}
        self.first_seen: Dict[str, float] = {}
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: Optional[BaseException] = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.observe()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc
            self._stop.wait(self.interval_s)

    def observe(self) -> None:
        counts: Dict[str, int] = {}
        for node in alive_nodes():
            counts[node.kind] = counts.get(node.kind, 0) + 1
        self.kinds.update(counts)
        for kind in counts:
            self.first_seen.setdefault(kind, time.monotonic() - self._t0)
        for kind, n in counts.items():
            self.peak[kind] = max(self.peak.get(kind, 0), n)

    def __enter__(self) -> "NodeWatcher":
        self.observe()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.observe()


@dataclass
class Scenario:
    id: str
    values: str
    request_model: str  # model key in the values file
    sets: Tuple[str, ...] = ()


class ScenarioRun:
    """A deployed scenario; its phases run once, in order, whichever test asks first."""

    def __init__(self, scenario: Scenario, docs: List[dict], values: Dict[str, Any], root: Path, helm_overlay: Dict):
        self.scenario = scenario
        self.docs = docs
        self.values = values
        self.root = root
        self.overlay = helm_overlay
        self.api_key = "sk-scale-to-zero-test"
        self.cluster: Optional[FakeKubeRayCluster] = None
        self.prepared: Optional[Prepared] = None
        self.apps: List[str] = []
        self.idle: Optional[Floor] = None
        self._scale_up: Optional[ScaleUp] = None
        self._floor_after: Optional[Floor] = None
        self._failed: Optional[BaseException] = None
        self.timings: Dict[str, float] = {}

    # -- facts from the render -------------------------------------------------------
    @property
    def rayservice(self) -> dict:
        from tests.conftest import rayservice_of

        return rayservice_of(self.docs)

    @property
    def system_group(self) -> bool:
        return any(g["groupName"] == "system" for g in self.rayservice["spec"]["rayClusterConfig"].get("workerGroupSpecs", []))

    @property
    def gateway_app(self) -> Optional[dict]:
        apps = self.prepared.serve_config["applications"]
        return next((a for a in apps if a.get("import_path") == GATEWAY_IMPORT_PATH), None)

    def model_id(self, key: str) -> str:
        return self.values["models"][key]["model_loading_config"]["model_id"]

    def tier_of(self, key: str) -> str:
        return self.values["models"][key]["tier"]

    # -- lifecycle -------------------------------------------------------------------
    def start(self, http_port: int) -> None:
        import ray

        t0 = time.monotonic()
        fitted = fit_node_types(derive_autoscaling_config(self.rayservice))
        self.fitted = fitted
        self.cluster = FakeKubeRayCluster(fitted, extra_env=TEST_SERVE_ENV)
        self.cluster.start()
        self.cluster.connect()
        self.timings["cluster_start_s"] = time.monotonic() - t0
        self.prepared = prepare_serve_config(self.docs, self.root, self.api_key, http_port)
        self.base_url = f"http://127.0.0.1:{http_port}"
        t1 = time.monotonic()
        self.apps = deploy(self.prepared.serve_config)
        self.timings["deploy_s"] = time.monotonic() - t1
        assert ray.is_initialized()
        self.idle = self.observe_floor(settle_s=3.0)
        self.timings["idle_floor_s"] = self.idle.seconds

    def stop(self) -> None:
        import ray
        from ray import serve

        t0 = time.monotonic()

        try:
            if ray.is_initialized():
                try:
                    serve.shutdown()
                except Exception:  # noqa: BLE001 - the cluster goes away next anyway
                    pass
                self.timings["serve_shutdown_s"] = time.monotonic() - t0
        finally:
            try:
                if ray.is_initialized():
                    ray.shutdown()
            finally:
                if self.cluster is not None:
                    self.cluster.shutdown()
                self.timings["stop_s"] = time.monotonic() - t0

    # -- phases ----------------------------------------------------------------------
    def floor_ok(self) -> Tuple[bool, Any]:
        nodes = alive_nodes()
        status = cluster_status(self.cluster.gcs_address)
        pending = len(status.pending_launches) + len(status.pending_nodes)
        extra = [n.kind for n in nodes if n.kind not in ("head", "system")]
        return (not gpu_nodes(nodes) and not extra and pending == 0), {
            "nodes": [n.kind for n in nodes], "pending": pending}

    def observe_floor(self, settle_s: float = 0.0, timeout_s: float = 60.0) -> Floor:
        t0 = time.monotonic()
        if settle_s:
            time.sleep(settle_s)  # a few autoscaler (1 s) and Serve control-loop periods
        if self.system_group:  # the gateway's replicas need the system node: wait for it to join
            wait_for(lambda: (any(n.kind == "system" for n in alive_nodes()), [n.kind for n in alive_nodes()]),
                     timeout_s, "the system node the CPU-only replicas are pinned to")
        wait_for(self.floor_ok, timeout_s, "the floor (no GPU node, nothing pending)")
        status = cluster_status(self.cluster.gcs_address)
        return Floor(nodes=alive_nodes(), pending_launches=len(status.pending_launches),
                     pending_nodes=len(status.pending_nodes), demands=status.resource_demands,
                     replicas=replica_nodes(), serve_counts=serve_replica_counts(), seconds=time.monotonic() - t0)

    def chat(self, model_id: str, timeout_s: float) -> Tuple[int, Dict[str, Any]]:
        import httpx

        gateway = self.gateway_app
        if gateway is not None:
            url = f"{self.base_url}{gateway['route_prefix'].rstrip('/')}/v1/chat/completions"
            headers = {"Authorization": f"Bearer {self.api_key}"}
        else:
            prefix = next(a.get("route_prefix") for a in self.prepared.serve_config["applications"]
                          if a.get("import_path") in LLM_IMPORT_PATHS and a.get("route_prefix"))
            url = f"{self.base_url}{prefix.rstrip('/')}/v1/chat/completions"
            headers = {}
        body = {"model": model_id, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
        response = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
        try:
            payload = response.json()
        except ValueError:
            payload = {"raw": response.text[:2000]}
        return response.status_code, payload

    def scale_up(self) -> ScaleUp:
        if self._failed:
            raise AssertionError(f"an earlier phase of this scenario failed: {self._failed!r}")
        if self._scale_up is None:
            try:
                self._scale_up = self._do_scale_up()
                self.timings["request_s"] = self._scale_up.seconds
            except BaseException as exc:
                self._failed = exc
                raise
        return self._scale_up

    def _do_scale_up(self) -> ScaleUp:
        import ray
        from ray.llm._internal.serve.core.server.llm_server import LLMServer
        from ray.serve.llm import LLMConfig

        key = self.scenario.request_model
        model_id = self.model_id(key)
        before = gpu_nodes(alive_nodes())
        t0 = time.monotonic()
        with NodeWatcher() as watcher:
            status, body = self.chat(model_id, timeout_s=240)
            seconds = time.monotonic() - t0
            nodes = alive_nodes()
            replicas = replica_nodes()
            pgs = [pg for pg in ray.util.placement_group_table().values() if pg.get("state") == "CREATED"]
            try:
                engine = self.model_handle(model_id).engine_placement.remote().result(timeout_s=30)
            except Exception as exc:  # noqa: BLE001 - recorded, asserted by the test
                engine = [{"error": repr(exc)}]
            time.sleep(3.0)  # a few more autoscaler periods: nothing else may come up
        assert watcher.error is None, watcher.error
        self.timings.update({f"request_{k}_up_s": v for k, v in watcher.first_seen.items() if k not in ("head", "system")})
        after = cluster_status(self.cluster.gcs_address)
        # Ray's own derivation of the replica's placement group (the one Serve reserves).
        options = LLMServer.get_deployment_options(LLMConfig.model_validate(self.prepared.llm_configs[model_id]))
        return ScaleUp(status=status, body=body, seconds=seconds, kinds_seen=set(watcher.kinds),
                       max_nodes_per_kind=dict(watcher.peak), nodes_at_reply=nodes, replicas_at_reply=replicas,
                       placement_groups=pgs, engine_placement=engine,
                       derived_bundles=options["placement_group_bundles"],
                       derived_strategy=options["placement_group_strategy"],
                       pending_after=(len(after.pending_launches), len(after.pending_nodes)),
                       gpu_nodes_before=before)

    def model_deployment(self, model_id: str) -> Tuple[str, str]:
        """(app, deployment) of the model's LLMServer, from Serve's status."""
        from ray import serve
        from ray.llm._internal.serve.core.server.builder import _get_deployment_name
        from ray.serve.llm import LLMConfig

        app = self.prepared.model_apps[model_id]
        suffix = ":" + _get_deployment_name(LLMConfig.model_validate(self.prepared.llm_configs[model_id]))
        names = [d for d in serve.status().applications[app].deployments if d.endswith(suffix)]
        assert len(names) == 1, (app, suffix, names)
        return app, names[0]

    def model_handle(self, model_id: str):
        from ray import serve

        app, deployment = self.model_deployment(model_id)
        return serve.get_deployment_handle(deployment, app_name=app)

    def back_to_floor(self, timeout_s: float = 120.0) -> Floor:
        self.scale_up()
        if self._floor_after is None:
            t0 = time.monotonic()
            model_id = self.model_id(self.scenario.request_model)
            app, deployment = self.model_deployment(model_id)
            marks: Dict[str, float] = {}

            def check() -> Tuple[bool, Any]:
                import ray

                now = time.monotonic() - t0
                if serve_replica_counts().get(f"{app}/{deployment}", 0) == 0:
                    marks.setdefault("replica_gone_s", now)
                if not [pg for pg in ray.util.placement_group_table().values() if pg.get("state") == "CREATED"]:
                    marks.setdefault("placement_group_removed_s", now)
                ok, seen = self.floor_ok()
                if ok:
                    marks.setdefault("floor_s", now)
                return ok, seen

            try:
                wait_for(check, timeout_s, "the floor after the request (no GPU node, nothing pending)")
                self.timings.update({f"after_{k}": v for k, v in marks.items()})
                floor = self.observe_floor(timeout_s=timeout_s)
            except BaseException as exc:
                self._failed = exc
                raise
            floor.seconds = time.monotonic() - t0
            self._floor_after = floor
            self.timings["back_to_floor_s"] = floor.seconds
        return self._floor_after


def fixed_text_of(body: Mapping[str, Any]) -> Optional[str]:
    try:
        return body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


__all__ = ["Scenario", "ScenarioRun", "FIXED_TEXT", "fixed_text_of", "min_replicas_overlay", "prepare_serve_config",
           "deploy", "replica_nodes", "serve_replica_counts", "wait_for"]
