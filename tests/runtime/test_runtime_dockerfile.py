"""runtime/Dockerfile (runtimePackaging.mode=image): its steps, replayed without Docker.

No Docker engine here, so the test reads the Dockerfile, builds the same
context its COPY lines (and .dockerignore) select, runs the same pip install
into a fresh target directory and imports the runtime from there in a clean
interpreter, the way the image's own smoke check does.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "runtime" / "Dockerfile"


def _instructions():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def test_base_image_follows_the_chart_image():
    args = dict(rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest)
    values = yaml.safe_load((REPO / "charts/ray-llm/values.yaml").read_text())
    repo, _, tag = args["RAY_LLM_IMAGE"].rpartition(":")
    assert repo == values["image"]["repository"] and tag == values["image"]["tag"]
    assert tag.startswith(values["rayVersion"] + "-"), "the base image's Ray must be the chart's rayVersion"
    froms = [rest for word, rest in _instructions() if word == "FROM"]
    assert froms == ["${RAY_LLM_IMAGE}"]
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users and users[-1] == "1000", "the image must end as the non-root ray user (the chart runs as 1000)"


def _ignored(rel: str, patterns) -> bool:
    # .dockerignore semantics for what we use: '*' then '!path' exceptions, last match wins.
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/") or fnmatch.fnmatch(rel, pat.replace("**/", "*/")):
            verdict = not negate
    return verdict


def test_copy_sources_exist_and_pass_dockerignore(tmp_path):
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    copies = [shlex.split(rest) for word, rest in _instructions() if word == "COPY"]
    assert copies
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        for src in sources:
            assert (REPO / src).exists(), f"COPY source {src} is missing"
            assert not _ignored(src, patterns), f"{src} is excluded by .dockerignore"


def test_install_step_yields_an_importable_runtime(tmp_path):
    # Build the context the COPY lines produce under /tmp/ray-llm.
    ctx = tmp_path / "ray-llm"
    for word, rest in _instructions():
        if word != "COPY":
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        *sources, dest = parts
        base = ctx / Path(dest.rstrip("/")).relative_to("/tmp/ray-llm")
        for src in sources:
            # "COPY a b dir/" copies into dir/; "COPY a dest" copies to dest.
            target = base / Path(src).name if dest.endswith("/") else base
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / src, target)
    site = tmp_path / "site"
    # Same flags as the RUN line; the build backend comes from this venv (no network needed).
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                           "--no-build-isolation", "--target", str(site), str(ctx)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (site / "rayllm_runtime" / "apps.py").is_file()
    check = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "import rayllm_runtime.apps, rayllm_runtime.serve_llm, rayllm_runtime; print(rayllm_runtime.__file__)",
         str(site)],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip().startswith(str(site))
