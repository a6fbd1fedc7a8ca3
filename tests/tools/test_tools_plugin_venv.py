"""The plugin shim's last resort: a private virtualenv built on first use.

A user who installs only the Helm plugin has no `ray-llm` on PATH; the shim then
creates a venv, installs the project from the plugin's checkout into it (from
the package index, like `pip install`), and runs the CLI from there. This runs
that path for real with a PATH that has python3 but no ray-llm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "plugin" / "bin" / "ray-llm-shim.sh"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _system_python_dir() -> str:
    # A python3 outside our venv, as on a user's machine.
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            probe = subprocess.run([cand, "-c", "import venv, ensurepip"], capture_output=True)
            if probe.returncode == 0:
                return str(Path(cand).parent)
    pytest.skip("no system python3 with venv/ensurepip to build the plugin's private venv")


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYLLM_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join([_system_python_dir(), "/usr/bin", "/bin"])
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def test_first_run_builds_a_private_venv_then_reuses_it(tmp_path):
    assert shutil.which("ray-llm", path=_env(tmp_path)["PATH"]) is None
    venv = tmp_path / "plugin-venv"
    env = _env(tmp_path, RAYLLM_VENV=str(venv))
    first = subprocess.run(["sh", str(SHIM), "validate", "-f", str(REPO / "values/prod.yaml")], env=env,
                           capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "creating" in first.stderr and "first run only" in first.stderr
    assert "valid" in first.stdout
    assert (venv / ".rayllm-installed").is_file() and (venv / "bin" / "ray-llm").is_file()

    # Second run: no reinstall, same verdicts; a bad file is still exit 1.
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  small: {acceleratorType: T4, gpusPerWorker: zero}\n")
    second = subprocess.run(["sh", str(SHIM), "validate", "-f", str(bad)], env=env, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert second.returncode == 1 and "tiers.small.gpusPerWorker" in second.stdout + second.stderr
    assert "creating" not in second.stderr

    # That install is a wheel: no chart beside it. The shim points it at the
    # checkout's chart; run bare, it finds one under the working directory, and
    # elsewhere it says how to name one (a usage error, no traceback).
    cli = str(venv / "bin" / "ray-llm")
    bare_env = _env(tmp_path)
    lost = subprocess.run([cli, "validate"], env=bare_env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert lost.returncode == 2 and "RAYLLM_CHART" in lost.stderr and "Traceback" not in lost.stderr
    found = subprocess.run([cli, "validate", "-f", "values/dev.yaml"], env=bare_env, capture_output=True, text=True,
                           timeout=120, cwd=REPO)
    assert found.returncode == 0, found.stderr[-2000:]


def test_a_failed_install_leaves_no_half_built_venv(tmp_path):
    broken = tmp_path / "not-ray-llm"
    broken.mkdir()
    (broken / "pyproject.toml").write_text('[project]\nname = "ray-llm"\nversion = "not a version"\n')
    venv = tmp_path / "plugin-venv"
    env = _env(tmp_path, RAYLLM_VENV=str(venv), RAYLLM_REPO=str(broken))
    proc = subprocess.run(["sh", str(SHIM), "validate"], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "Traceback" not in proc.stderr.split("helm ray-llm:")[-1]
    assert not venv.exists()
