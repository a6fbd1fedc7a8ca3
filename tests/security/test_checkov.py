"""The rendered prod release passes checkov's Kubernetes checks (or each failure is listed).

checkov comes from its own virtualenv (.venv-checkov, made by `make setup`;
its dependencies clash with Ray's), or from $RAYLLM_CHECKOV. Without it these
tests skip and say so.

checkov knows Kubernetes' own kinds only: it parses the RayService but runs no
check inside it, so the head and worker pod templates would go unchecked.
Beside the rendered manifests it therefore gets the Pods KubeRay creates from
them (tests/security/pods.py: with the autoscaler sidecar and the
wait-gcs-ready init container KubeRay adds). Every failure must be fixed in the
chart or listed, with reason and remedy, in ci/checkov-skips.yaml; a listed
skip that no longer fails is an error too.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import yaml

from ..conftest import REPO, VALUES_DIR, docs_of, helm_template, write_values
from .pods import kuberay_pods

SKIPS_FILE = REPO / "ci" / "checkov-skips.yaml"
SECRET_OPTIONS = Path(__file__).parent / "values" / "secret-options-values.yaml"
POD_CHECKS = {"CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_16", "CKV_K8S_31"}
RAY_PODS = ("head", "small", "medium", "large", "xlarge")


def checkov_path() -> str:
    explicit = os.environ.get("RAYLLM_CHECKOV")
    if explicit:
        return explicit
    local = REPO / ".venv-checkov" / "bin" / "checkov"
    if local.is_file():
        return str(local)
    return shutil.which("checkov") or ""


@pytest.fixture(scope="module")
def checkov() -> str:
    path = checkov_path()
    if not path or not Path(path).is_file():
        pytest.skip("checkov not found: `make setup` installs it into .venv-checkov (or set RAYLLM_CHECKOV)")
    return path


def with_kuberay_pods(docs: List[dict]) -> List[dict]:
    out = list(docs)
    for d in docs:
        if d.get("kind") == "RayService":
            out += [pod for _, pod in kuberay_pods(d)]
    return out


def run_checkov(checkov: str, files: List[Path], extra: Tuple[str, ...] = ()) -> dict:
    args = [checkov, "--framework", "kubernetes", "-o", "json", "--skip-download", "--no-fail-on-crash", *extra]
    for f in files:
        args += ["-f", str(f)]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_LOG_LEVEL="ERROR", PYTHONWARNINGS="ignore")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.stdout.strip(), f"checkov printed nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework
        report = next(r for r in report if r.get("check_type") == "kubernetes")
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    return report


def results(report: dict, kind: str) -> Set[Tuple[str, str]]:
    return {(c["check_id"], c["resource"]) for c in report["results"][f"{kind}_checks"]}


def load_skips() -> List[dict]:
    return yaml.safe_load(SKIPS_FILE.read_text())["skips"]


def is_skipped(check_id: str, resource: str, skips: List[dict]) -> bool:
    return any(s["id"] == check_id and any(fnmatch.fnmatchcase(resource, p) for p in s.get("resources", ["*"]))
               for s in skips)


@pytest.fixture(scope="module")
def prod_report(checkov, helm4, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("checkov")
    files = []
    for release, values in (("llm", [VALUES_DIR / "prod.yaml"]), ("llmx", [VALUES_DIR / "prod.yaml", SECRET_OPTIONS])):
        docs = docs_of(helm_template(helm4, values, release=release).stdout)
        path = tmp / f"{release}.yaml"
        path.write_text(yaml.safe_dump_all(with_kuberay_pods(docs), sort_keys=False))
        files.append(path)
    return run_checkov(checkov, files)


def test_skip_file_entries_are_documented():
    skips = load_skips()
    ids = [s["id"] for s in skips]
    assert len(ids) == len(set(ids)), "one entry per check id"
    for s in skips:
        assert s["id"].startswith(("CKV_K8S_", "CKV2_K8S_")), s
        for key in ("name", "reason", "remedy"):
            assert isinstance(s.get(key), str) and len(s[key].strip()) > 10, (s["id"], key)
        assert s.get("resources"), s["id"]


def test_checkov_runs_pod_checks_on_the_ray_pods_not_on_the_rayservice(prod_report):
    checked = results(prod_report, "passed") | results(prod_report, "failed")
    # The RayService itself gets no container checks: hence the Pods.
    assert not {c for c, r in checked if r.startswith("RayService.") and c in POD_CHECKS}
    for release in ("llm", "llmx"):
        for pod in RAY_PODS:
            resource = f"Pod.default.{release}-ray-llm-{pod}"
            ran = {c for c, r in checked if r == resource}
            assert POD_CHECKS <= ran, (resource, sorted(POD_CHECKS - ran))
            passed = {c for c, r in results(prod_report, "passed") if r == resource}
            # privileged, root, NET_RAW, capabilities, privilege escalation, seccomp
            assert POD_CHECKS <= passed, (resource, sorted(POD_CHECKS - passed))
    assert {r for _, r in checked if r.startswith("CronJob.")}, "the scale-down CronJobs were checked"


def test_every_checkov_failure_is_fixed_or_documented(prod_report):
    skips = load_skips()
    unexpected = sorted((c, r) for c, r in results(prod_report, "failed") if not is_skipped(c, r, skips))
    names = {c["check_id"]: c["check_name"] for c in prod_report["results"]["failed_checks"]}
    assert unexpected == [], "fix these in the chart or document them in ci/checkov-skips.yaml:\n" + "\n".join(
        f"{c} {names[c]}: {r}" for c, r in unexpected)


def test_no_stale_skips(prod_report):
    failed = results(prod_report, "failed")
    stale = []
    for s in load_skips():
        for pattern in s.get("resources", ["*"]):
            if not any(c == s["id"] and fnmatch.fnmatchcase(r, pattern) for c, r in failed):
                stale.append(f"{s['id']} {pattern}")
    assert stale == [], "these skips no longer fail; remove them from ci/checkov-skips.yaml:\n" + "\n".join(stale)


def test_documented_remedies_clear_their_checks(checkov, helm4, tmp_path):
    """Digests, no autoscaler and no HF token: the checks those skips name pass."""
    digest = "sha256:" + "0" * 64
    overlay = write_values(tmp_path, "remedies.yaml", {
        "image": {"tag": f"2.60.0-py311-cu128@{digest}"},
        "huggingFaceToken": {"secretName": ""},
        "rayService": {"enableInTreeAutoscaling": False},
    })
    docs = docs_of(helm_template(helm4, [VALUES_DIR / "prod.yaml", overlay]).stdout)
    path = tmp_path / "remedies-rendered.yaml"
    path.write_text(yaml.safe_dump_all(with_kuberay_pods(docs), sort_keys=False))
    remedied = ("CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_38", "CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_35")
    report = run_checkov(checkov, [path], ("--check", ",".join(remedied)))
    failed = {(c, r) for c, r in results(report, "failed") if r.startswith("Pod.")}
    assert failed == set(), sorted(failed)
    passed: Dict[str, Set[str]] = {}
    for c, r in results(report, "passed"):
        passed.setdefault(c, set()).add(r)
    for check in remedied:
        assert {f"Pod.default.llm-ray-llm-{p}" for p in RAY_PODS} <= passed.get(check, set()), check
