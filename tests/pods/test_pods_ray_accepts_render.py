"""What the pods' Ray does with every rendered values file and chart CI scenario.

The pods run the Ray of the chart's ``rayVersion``; the suite runs on that very Ray
(the Makefile installs ``ray[serve]==<rayVersion>``), and the first test fails when the
two drift apart. Each check takes the path the cluster takes:

* every model file the chart renders goes through that Ray's ``LLMConfig``;
* ``serveConfigV2`` goes through Serve's ``ServeDeploySchema``, then every application
  is built by Serve's own builder call (``call_user_app_builder_with_args_if_necessary``,
  what ``serve deploy`` runs) in a child process with the head pod's ``PYTHONPATH`` and
  the files laid out where the pod mounts them, so the shipped runtime copy is what runs;
* every rendered cluster goes through Ray's own KubeRay autoscaling-config derivation
  (what the autoscaler sidecar runs at start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHART, CI_VALUES_FILES, REPO, VALUES_FILES, docs_of, helm_template, rayservice_of

RENDERS = VALUES_FILES + CI_VALUES_FILES
IDS = [p.relative_to(REPO).as_posix() for p in RENDERS]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def renders(helm4):
    return {path: docs_of(helm_template(helm4, [path]).stdout) for path in RENDERS}


def test_the_suite_runs_on_the_pods_ray():
    import ray

    chart_ray = yaml.safe_load((CHART / "values.yaml").read_text())["rayVersion"]
    assert ray.__version__ == chart_ray, (
        f"the tests run on Ray {ray.__version__} but the chart's pods run Ray {chart_ray}; "
        "run `make setup` (it installs the Ray of charts/ray-llm/values.yaml)"
    )


@pytest.mark.parametrize("values", RENDERS, ids=IDS)
def test_every_model_file_passes_the_pods_llm_config(renders, values):
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    docs = renders[values]
    files = {f"{d['metadata']['name']}/{k}": v for d in docs if d.get("kind") == "ConfigMap"
             and d["metadata"]["labels"].get("app.kubernetes.io/component") == "model-config"
             for k, v in d["data"].items()}
    rejected = {}
    for name, text in files.items():
        try:
            LLMConfig.model_validate(yaml.safe_load(text))
        except Exception as exc:  # pydantic's ValidationError, or Ray's own ValueError
            rejected[name] = str(exc)[:400]
    assert not rejected, rejected


@pytest.fixture(scope="module")
def built_apps(renders, tmp_path_factory):
    """{values file: [per-app result]} from Serve's builder call in a child with the pod's PYTHONPATH.

    Renders whose head pod sets the same PYTHONPATH (the runtime ConfigMap; its content is
    the chart's files, the same in every render) share one child, so Ray Serve LLM and
    vLLM are imported once per group rather than once per render."""
    from rayllm_cli.run_command import layout_release

    groups = {}
    for path, docs in renders.items():
        root = tmp_path_factory.mktemp(path.stem)
        layout = layout_release(docs, root)  # the ConfigMaps where the head pod mounts them
        head = rayservice_of(docs)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        pod_path = next((e["value"] for e in head.get("env", []) if e["name"] == "PYTHONPATH"), None)
        runtime = layout.mounts[pod_path.rstrip("/")] if pod_path else None
        runtime_files = tuple(sorted(p.read_text() for p in runtime.rglob("*.py"))) if runtime else None
        group = groups.setdefault(runtime_files, {"runtime": runtime, "configs": {}})
        group["configs"][str(path)] = layout.serve_config
    results = {}
    for group in groups.values():
        env = dict(os.environ)
        if group["runtime"] is not None:
            env["PYTHONPATH"] = str(group["runtime"])
        else:
            env.pop("PYTHONPATH", None)  # runtimePackaging image: the package installed in the image
        proc = subprocess.run([sys.executable, str(HERE / "build_apps_as_serve_does.py")],
                              input=json.dumps(group["configs"]), capture_output=True, text=True, env=env,
                              timeout=600, cwd=str(group["runtime"] or REPO))
        assert proc.returncode == 0, proc.stderr[-3000:]
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                row["runtime"] = str(group["runtime"]) if group["runtime"] else None
                results.setdefault(Path(row["config"]), []).append(row)
    return results, {Path(p): c for g in groups.values() for p, c in g["configs"].items()}


@pytest.mark.parametrize("values", RENDERS, ids=IDS)
def test_every_app_builds_through_serves_builder_call(built_apps, values):
    results, configs = built_apps
    rows = results.get(values, [])
    assert [r["name"] for r in rows] == [a["name"] for a in configs[values]["applications"]]
    failed = {r["name"]: r["error"] for r in rows if not r["ok"]}
    assert not failed, failed
    for r in rows:  # with the runtime ConfigMap, the shipped copy was imported, not the checkout's runtime/
        if r["runtime"] and "rayllm_runtime" in r["module_file"]:
            assert r["module_file"].startswith(r["runtime"]), r


@pytest.mark.parametrize("values", RENDERS, ids=IDS)
def test_rays_autoscaler_derives_a_config_from_each_rendered_cluster(renders, values):
    """The autoscaler sidecar's first step: Ray's own derivation from the RayCluster spec.
    A group it cannot size (no CPU) makes it raise and crash-loop, and nothing scales."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    service = rayservice_of(renders[values])
    spec = service["spec"]["rayClusterConfig"]
    if not spec.get("enableInTreeAutoscaling"):
        pytest.skip("autoscaling is off in this scenario")
    config = _derive_autoscaling_config_from_ray_cr(
        {"metadata": {"name": service["metadata"]["name"], "namespace": "ai"},
         "spec": {**spec, "workerGroupSpecs": spec.get("workerGroupSpecs", [])}})
    types = config["available_node_types"]
    for group in spec.get("workerGroupSpecs", []):
        derived = types[group["groupName"]]
        container = group["template"]["spec"]["containers"][0]
        gpu_limit = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert derived["resources"]["CPU"] >= 1, derived
        assert derived["resources"]["memory"] > 0, derived
        # Ray's view of the group's GPUs is what the pod gets from Kubernetes.
        assert derived["resources"].get("GPU", 0) == gpu_limit, derived
        for name, amount in group["resources"].items():
            if name not in ("CPU", "GPU", "memory"):
                assert derived["resources"][name] == int(amount), (name, derived)
        assert (derived["min_workers"], derived["max_workers"]) == (group["minReplicas"], group["maxReplicas"])
    head = types["headgroup"]["resources"]
    assert head.get("GPU", 0) == 0 and head["rayllm-head"] == 1, head


@pytest.mark.parametrize("values", RENDERS, ids=IDS)
def test_kuberay_accepts_every_rendered_rayservice(renders, values):
    """KubeRay's validation of a RayService (tests/kuberay_rules.py, read from v1.7.0), which it runs
    before acting: a rejected spec leaves the release with no cluster at all."""
    from tests.kuberay_rules import rayservice_errors

    assert rayservice_errors(rayservice_of(renders[values])) == []


def test_a_release_name_kuberay_refuses_is_refused_by_helm(helm4):
    """KubeRay refuses a RayService whose name is not a DNS-1035 label (validation.go:636); the
    name comes from the release, so the chart refuses it first, with the fix."""
    proc = helm_template(helm4, [VALUES_FILES[0]], release="1llm", check=False)
    assert proc.returncode != 0 and "DNS-1035" in proc.stderr and "fullnameOverride" in proc.stderr, proc.stderr


@pytest.mark.parametrize("serve_port", [8000, 9000])
def test_workers_leave_probes_to_kuberays_serve_aware_ones(helm4, tmp_path, serve_port):
    """KubeRay gives a container without probes its own (pod.go:775, :795); a RayService worker's
    readiness then checks the node's Serve proxy on the port named "serve" (pod.go:816-826), so a
    worker with no proxy yet (or a draining one) drops out of the serve Service. The head's proxy
    KubeRay checks itself at every reconcile."""
    from tests.conftest import write_values
    from tests.kuberay_rules import inject_probes

    values = write_values(tmp_path, "port.yaml", {"serve": {"port": serve_port}})
    service = rayservice_of(docs_of(helm_template(helm4, [CHART / "ci" / "minimal-values.yaml", values]).stdout))
    cluster = service["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in head and "livenessProbe" not in head
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        assert "readinessProbe" not in container and "livenessProbe" not in container
        probed = inject_probes(container, head=False, rayservice=True, ray_version=cluster["rayVersion"],
                               ray_start_params=group["rayStartParams"])
        command = probed["readinessProbe"]["exec"]["command"][-1]
        assert f"http://localhost:{serve_port}/-/healthz" in command and "local_raylet_healthz" in command
        # liveness: 120 misses 5 s apart (10 minutes), not a restart after 2 minutes of a busy raylet
        assert probed["livenessProbe"]["failureThreshold"] * probed["livenessProbe"]["periodSeconds"] == 600


@pytest.mark.parametrize("values", RENDERS, ids=IDS)
def test_the_autoscaler_version_is_stated_v2(renders, values):
    """Ray >= 2.49 runs autoscaler v2 under KubeRay, but KubeRay reads only autoscalerOptions.version:
    without it, workers keep restartPolicy Always (idle nodes are not reclaimed) and a per-group
    idleTimeoutSeconds makes KubeRay refuse the RayService (tests/kuberay_rules.py)."""
    spec = rayservice_of(renders[values])["spec"]["rayClusterConfig"]
    if not spec.get("enableInTreeAutoscaling"):
        pytest.skip("autoscaling is off in this scenario")
    assert (spec.get("autoscalerOptions") or {}).get("version") == "v2", spec.get("autoscalerOptions")
    for group in spec.get("workerGroupSpecs", []):
        assert group["template"]["spec"].get("restartPolicy") in (None, "Never"), group["groupName"]
