"""The Makefile installs the pods' Ray: the version it reads from the generated values.yaml is the
chart's default rayVersion (values.yaml is generated, so the line's quoting may change)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_make_reads_the_charts_ray_version():
    proc = subprocess.run(["make", "-s", "-n", "-p", "-f", "Makefile", "render"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    found = re.search(r"^RAY_VERSION := (\S*)$", proc.stdout, re.M)
    chart = yaml.safe_load((REPO / "charts" / "ray-llm" / "values.yaml").read_text())["rayVersion"]
    assert found and found.group(1) == str(chart), proc.stdout[-500:]


def _database() -> str:
    proc = subprocess.run(["make", "-s", "-n", "-p", "-f", "Makefile", "render"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    return proc.stdout


def test_phony_lists_only_targets_the_makefile_defines():
    text = (REPO / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split())
    defined = set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))
    assert phony and phony <= defined, sorted(phony - defined)


def test_make_test_runs_the_linters_first():
    deps = re.search(r"^test: (.*)$", _database(), re.M)
    assert deps and "lint" in deps.group(1).split(), deps
