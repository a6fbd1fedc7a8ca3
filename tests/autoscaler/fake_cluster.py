"""A rendered RayCluster as Ray's fake multi-node autoscaling cluster.

The node types are what the KubeRay autoscaler sidecar itself computes from the
RayCluster spec: Ray's ``_derive_autoscaling_config_from_ray_cr``. Only what this
2-core CI machine cannot give is changed, each change in :func:`fit_node_types` with its
reason; GPU counts and the chart's placement resources (``rayllm-head``,
``rayllm-system``, ``rayllm-tier-*``, ``accelerator_type:*``) are kept exactly.

The cluster is ``ray.cluster_utils.AutoscalingCluster`` (fake multi-node provider,
autoscaler v2 as the chart's ``autoscalerOptions.version: v2``) with three things changed,
all in :class:`FakeKubeRayCluster`:

* its base config is built here: the ``fake_multi_node/example.yaml`` it reads is not in
  the Ray wheel (the provider section below is that file's, plus ``gcs_address``);
* ``ray start`` gets non-default ports and a temp dir of its own, so it can run beside
  another Ray on this machine, and the provider is told the GCS port;
* no ``ray stop --force`` (it kills every Ray of the machine, not only this one): the
  cluster runs under :mod:`cluster_supervisor`, a child subreaper that ends exactly the
  processes of this cluster.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import psutil
from ray.cluster_utils import AutoscalingCluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

#: Resources whose amounts are the chart's placement contract: never changed here.
PLACEMENT_PREFIXES = ("rayllm-", "accelerator_type:")

#: Logical CPUs of a fake node whose group advertises any. The chart's groups declare
#: 4-24 CPUs (container limits) on 8-320 GiB pods; the fake nodes are processes on one
#: 2-core machine, and a raylet prestarts Python workers per logical CPU, so every
#: non-zero CPU count becomes 1: enough for what the chart places on them (Ray's LLMServer
#: replica asks CPU 1 in the first bundle of its placement group, ingress replicas ask
#: none). A group that advertises CPU 0 (prod's head) keeps 0: that is under test.
TEST_CPUS_PER_NODE = 1
#: Object store of every fake node (the chart's object-store-memory is 4-32 GiB and is
#: not part of the derived node types; Ray's default, 30% of RAM per node, would be ~7 GiB
#: of /dev/shm for each of up to ~6 fake nodes of this 24 GiB machine). 100 MiB is plenty:
#: nothing here puts large objects into the store.
TEST_OBJECT_STORE_BYTES = 100 * 1024 * 1024
#: The autoscaler's idle timeout for the test: the chart renders 60 s (dev, staging) and
#: 300 s (prod); the scale-down path is the same with any value, only the wait differs.
#: Long enough that a node that just joined gets its placement group before it could
#: count as idle, short enough to keep the suite inside CI limits.
TEST_IDLE_TIMEOUT_S = 8.0


def derive_autoscaling_config(rayservice: Mapping[str, Any], namespace: str = "ai") -> Dict[str, Any]:
    """What the KubeRay autoscaler sidecar derives from the rendered RayCluster spec (Ray's own code)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    spec = copy.deepcopy(rayservice["spec"]["rayClusterConfig"])
    return _derive_autoscaling_config_from_ray_cr(
        {"metadata": {"name": rayservice["metadata"]["name"], "namespace": namespace}, "spec": spec})


@dataclass
class FittedNodeTypes:
    """Node types for the fake cluster and a record of every change from the derived ones."""

    head_type: str
    head_resources: Dict[str, float]
    worker_types: Dict[str, Dict[str, Any]]
    idle_timeout_minutes: float
    derived: Dict[str, Any]
    changes: List[str] = field(default_factory=list)


def _fit_resources(name: str, resources: Mapping[str, float], changes: List[str]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for key, amount in resources.items():
        if key == "CPU":
            fitted = min(float(amount), TEST_CPUS_PER_NODE) if amount else 0
            if fitted != amount:
                changes.append(f"{name}: CPU {amount} -> {fitted:g} (logical CPUs of a fake node on 2 cores)")
            out[key] = fitted
        elif key == "memory":
            # Ray's fake provider passes every resource but CPU/GPU/object_store_memory to the
            # node as a custom resource, and Ray refuses a custom resource named "memory"
            # ("`memory` cannot be a custom resource"); each fake node then advertises this
            # machine's memory (Ray's own detection). Nothing the chart deploys asks for memory.
            changes.append(f"{name}: memory {amount} not set (the fake provider cannot set it)")
        else:
            out[key] = amount  # GPU and the placement resources: exactly as derived
    out["object_store_memory"] = TEST_OBJECT_STORE_BYTES
    return out


def fit_node_types(derived: Mapping[str, Any]) -> FittedNodeTypes:
    """The derived node types, fitted to this machine (see the constants above for why)."""
    types = derived["available_node_types"]
    head_name = derived["head_node_type"]
    changes: List[str] = []
    head = _fit_resources(head_name, types[head_name]["resources"], changes)
    workers: Dict[str, Dict[str, Any]] = {}
    for name, node_type in types.items():
        if name == head_name:
            continue
        fitted = copy.deepcopy(dict(node_type))
        fitted["resources"] = _fit_resources(name, node_type["resources"], changes)
        if fitted.get("idle_timeout_s") is not None:  # per-group idleTimeoutSeconds (v2)
            changes.append(f"{name}: idle_timeout_s {fitted['idle_timeout_s']} -> {TEST_IDLE_TIMEOUT_S:g}")
            fitted["idle_timeout_s"] = TEST_IDLE_TIMEOUT_S
        workers[name] = fitted
    changes.append(f"idle_timeout_minutes {derived['idle_timeout_minutes']} -> {TEST_IDLE_TIMEOUT_S / 60:g}")
    for name, node_type in types.items():  # the contract the test relies on, checked not assumed
        source = {k: v for k, v in node_type["resources"].items() if k == "GPU" or k.startswith(PLACEMENT_PREFIXES)}
        kept = head if name == head_name else workers[name]["resources"]
        assert all(kept.get(k) == v for k, v in source.items()), (name, source, kept)
    return FittedNodeTypes(head_type=head_name, head_resources=head, worker_types=workers,
                           idle_timeout_minutes=TEST_IDLE_TIMEOUT_S / 60, derived=dict(derived), changes=changes)


def _free_port() -> int:
    from rayllm_runtime.testing import free_port

    return free_port()


class FakeKubeRayCluster(AutoscalingCluster):
    """Ray's AutoscalingCluster for one rendered RayCluster; see the module docstring."""

    def __init__(self, fitted: FittedNodeTypes, extra_env: Optional[Mapping[str, str]] = None):
        self.fitted = fitted
        self.port = _free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="rsz-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.gcs_address = f"127.0.0.1:{self.port}"  # the GCS listens on every interface
        self.extra_env = dict(extra_env or {})
        self._supervisor: Optional[subprocess.Popen] = None
        super().__init__(dict(fitted.head_resources), copy.deepcopy(fitted.worker_types), autoscaler_v2=True)
        # The fake provider launches worker nodes against <node ip>:6379 unless told the GCS address.
        self._config["provider"]["gcs_address"] = self.gcs_address

    @property
    def config(self) -> Dict[str, Any]:
        return self._config

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        """AutoscalingCluster._generate_config, with example.yaml's content from :meth:`_base_config`."""
        from ray.autoscaler._private.fake_multi_node.node_provider import (
            FAKE_HEAD_NODE_ID,
        )

        config = self._base_config()
        config["available_node_types"] = worker_node_types
        config["available_node_types"]["ray.head.default"] = {
            "resources": head_resources, "node_config": {}, "max_workers": 0}
        if autoscaler_v2:
            config["provider"]["launch_multiple"] = True
            config["provider"]["head_node_id"] = FAKE_HEAD_NODE_ID
        config.update(config_kwargs)
        return config

    def _base_config(self) -> Dict[str, Any]:
        derived = self.fitted.derived
        return {
            "cluster_name": derived.get("cluster_name", "fake_multinode"),
            "max_workers": derived["max_workers"],
            # example.yaml's provider section, except the type: the autoscaler fills a
            # "fake_multinode" config with defaults read from example.yaml, which the wheel
            # lacks, so the monitor would crash. "external" names the very same provider class
            # (Ray's FakeMultiNodeProvider) and takes its defaults from code.
            "provider": {"type": "external",
                         "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
                         "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "available_node_types": {},
            "head_node_type": "ray.head.default",  # the fake provider's head type (FAKE_HEAD_NODE_TYPE)
            "auth": {},
            "upscaling_speed": derived.get("upscaling_speed", 1.0),
            "idle_timeout_minutes": self.fitted.idle_timeout_minutes,
            "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [],
        }

    # -- lifecycle -------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> None:
        from ray.autoscaler._private.fake_multi_node.node_provider import (
            FAKE_HEAD_NODE_ID,
        )

        config_path = Path(self.temp_dir) / "autoscaling.json"
        config_path.write_text(json.dumps(self.config))
        head = dict(self._head_resources)
        ray_bin = str(Path(sys.executable).parent / "ray")
        if not Path(ray_bin).exists():
            ray_bin = shutil.which("ray") or ray_bin
        cmd = [ray_bin, "start", "--head", f"--port={self.port}",
               f"--autoscaling-config={config_path}", f"--temp-dir={self.temp_dir}",
               "--include-dashboard=false", "--disable-usage-stats",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
               f"--dashboard-agent-grpc-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
               f"--metrics-export-port={_free_port()}",
               f"--num-cpus={head.pop('CPU', 0):g}", f"--num-gpus={head.pop('GPU', 0):g}",
               f"--object-store-memory={int(head.pop('object_store_memory'))}"]
        if head:
            cmd.append(f"--resources={json.dumps(head)}")
        env = dict(os.environ)
        env.update({
            # AutoscalingCluster.start's environment (autoscaler v2 on the fake provider):
            "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1", "RAY_enable_autoscaler_v2": "1",
            "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
            "RAY_USAGE_STATS_ENABLED": "0",
            # `ray start` turns token authentication on when ~/.ray/auth_token exists, while a
            # driver that connects to an existing cluster talks without a token unless this
            # process set RAY_AUTH_MODE=token before (a local ray.init() does; other test modules
            # run those). Off, the cluster accepts the driver either way. It runs on random ports
            # for the minutes of one scenario.
            "RAY_AUTH_MODE": "disabled",
            # The fake nodes' processes import the test's LLMServer subclass (server_cls).
            "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        })
        env.update(self.extra_env)
        self._supervisor = subprocess.Popen(
            [sys.executable, str(HERE / "cluster_supervisor.py"), *cmd], env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.temp_dir)
        lines: List[str] = []
        started = threading.Event()

        def drain() -> None:  # read the supervisor's output to the end, so it never blocks on a full pipe
            for line in self._supervisor.stdout:
                lines.append(line)
                if line.startswith("SUPERVISOR-STARTED"):
                    started.set()
            started.set()  # EOF: the supervisor is gone

        threading.Thread(target=drain, daemon=True).start()
        if not started.wait(timeout_s):
            raise RuntimeError(f"ray start did not finish in {timeout_s:g} s:\n" + "".join(lines[-60:]))
        done = [line for line in lines if line.startswith("SUPERVISOR-STARTED")]
        if not done or done[0].split()[1] != "0":
            raise RuntimeError("ray start failed:\n" + "".join(lines[-60:]))

    def connect(self) -> None:
        import ray

        ray.init(address=self.gcs_address, log_to_driver=False, logging_level="WARNING")

    def shutdown(self) -> None:
        """End this cluster's processes (only those) and remove its temp dir."""
        sup = self._supervisor
        self._supervisor = None
        if sup is not None and sup.poll() is None:
            try:
                stragglers = psutil.Process(sup.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                stragglers = []
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(timeout=60)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait(timeout=10)
            for proc in stragglers:  # only if the supervisor could not end them itself
                try:
                    if proc.is_running():
                        proc.kill()
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# -- observing the cluster ---------------------------------------------------------------
@dataclass(frozen=True)
class NodeView:
    node_id: str
    kind: str  # "head", "system", or "tier:<name>"
    resources: Dict[str, float]

    @property
    def gpus(self) -> float:
        return self.resources.get("GPU", 0.0)


def node_kind(resources: Mapping[str, float]) -> str:
    if "rayllm-head" in resources:
        return "head"
    if "rayllm-system" in resources:
        return "system"
    tiers = [k[len("rayllm-tier-"):] for k in resources if k.startswith("rayllm-tier-")]
    return f"tier:{tiers[0]}" if len(tiers) == 1 else f"unknown:{sorted(resources)}"


def alive_nodes() -> List[NodeView]:
    import ray

    return [NodeView(n["NodeID"], node_kind(n["Resources"]), dict(n["Resources"]))
            for n in ray.nodes() if n.get("Alive")]


def gpu_nodes(nodes: Iterable[NodeView]) -> List[NodeView]:
    return [n for n in nodes if n.gpus > 0]


def cluster_status(gcs_address: str):
    from ray.autoscaler.v2.sdk import get_cluster_status

    return get_cluster_status(gcs_address)


def actors_alive() -> List[Dict[str, Any]]:
    """Every live actor of the cluster from the GCS (no dashboard needed)."""
    import ray

    return [a for a in ray._private.state.actors().values() if a.get("State") == "ALIVE"]
