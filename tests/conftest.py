"""Shared fixtures: the checkout, real helm binaries, rendering helpers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "ray-llm"
VALUES_DIR = REPO / "values"
VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))
CI_VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))

# Helm 3.18 and Helm 4 for every chart check; 3.17 (draft-07-only schema
# engine) joins where the schema's meaning is at stake.
HELM_LABELS = ("3.18", "4")


def _helm_path(label: str) -> Path:
    from rayllm_cli.helm_tools import fetch_helm

    return fetch_helm(label)


@pytest.fixture(scope="session")
def helm_paths() -> Dict[str, Path]:
    return {label: _helm_path(label) for label in ("3.17", "3.18", "4")}


@pytest.fixture(scope="session", params=HELM_LABELS)
def helm(request, helm_paths) -> Path:
    return helm_paths[request.param]


@pytest.fixture(scope="session")
def helm4(helm_paths) -> Path:
    return helm_paths["4"]


def run_helm(helm: Path, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # Keep helm away from the user's repos/plugins/kubeconfig.
    env.setdefault("HELM_CACHE_HOME", str(REPO / ".tools" / "helm-home" / "cache"))
    env.setdefault("HELM_CONFIG_HOME", str(REPO / ".tools" / "helm-home" / "config"))
    env.setdefault("HELM_DATA_HOME", str(REPO / ".tools" / "helm-home" / "data"))
    env["KUBECONFIG"] = "/nonexistent-kubeconfig"
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def helm_template(
    helm: Path,
    values: Sequence[Path] = (),
    sets: Sequence[str] = (),
    release: str = "llm",
    check: bool = True,
) -> subprocess.CompletedProcess:
    args: List[str] = ["template", release, str(CHART), "--namespace", "ai"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    # Many tests render the same values: one helm run per (binary, arguments, values files'
    # content) for the session. The chart is not edited while the tests run.
    key = (str(helm), tuple(args), tuple(Path(v).read_bytes() if Path(v).is_file() else str(v) for v in values))
    proc = _RENDERED.get(key)
    if proc is None:
        proc = run_helm(helm, args, check=False)
        _RENDERED[key] = proc
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


_RENDERED: Dict[tuple, subprocess.CompletedProcess] = {}


def docs_of(text: str) -> List[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def rayservice_of(docs: List[dict]) -> dict:
    found = [d for d in docs if d.get("kind") == "RayService"]
    assert len(found) == 1, f"expected one RayService, got {len(found)}"
    return found[0]


def serve_config_of(docs: List[dict]) -> dict:
    return yaml.safe_load(rayservice_of(docs)["spec"]["serveConfigV2"])


def model_files_of(docs: List[dict]) -> Dict[str, str]:
    """{configmap-name/key: yaml text} of every model family ConfigMap."""
    out = {}
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "model-config":
            for key, text in d["data"].items():
                out[f"{d['metadata']['name']}/{key}"] = text
    return out


def import_benchmark(module: str):
    """A module of benchmarks/ (scripts, not a package: imported with that folder on sys.path)."""
    import importlib
    import sys

    folder = str(REPO / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(folder)


def write_values(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(autouse=True, scope="module")
def _no_ray_leaks_between_modules():
    """Some checks (Ray's builders) start Ray implicitly; the runtime suites start their own."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
