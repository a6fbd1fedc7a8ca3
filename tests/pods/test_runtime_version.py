"""A runtime change reaches the running replicas as a redeploy Serve can see.

Editing a shipped runtime module changes only the runtime ConfigMap, which Serve never
reads; the chart ties each app's runtime_env to a digest of the modules it imports
(RAYLLM_RUNTIME_VERSION), so Serve's own code version of the app (what it compares to
decide a redeploy) moves for exactly the apps that import the edited module. Judged with
the pods' Ray: Serve's ServeApplicationSchema and get_app_code_version on helm's render.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict

import pytest

from tests.conftest import CHART, VALUES_DIR, docs_of, run_helm, serve_config_of

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.needs_ray

GATEWAY_ONLY = "audit.py"  # imported by the gateway app, not by the LLM apps
LLM_LOADER = "serve_llm.py"  # the LLM apps' builder module (the gateway app ships every module)


def _code_versions(helm: Path, chart: Path) -> Dict[str, str]:
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    out = run_helm(helm, ["template", "llm", str(chart), "--namespace", "ai", "-f", str(VALUES_DIR / "prod.yaml")])
    apps = serve_config_of(docs_of(out.stdout))["applications"]
    return {a["name"]: get_app_code_version(ServeApplicationSchema.model_validate(a)) for a in apps}


def _edit(chart: Path, module: str) -> None:
    path = chart / "files" / "rayllm_runtime" / module
    path.write_text(path.read_text() + "\n# an edit\n")


def test_a_runtime_edit_redeploys_exactly_the_apps_that_import_it(helm4, tmp_path):
    chart = tmp_path / "ray-llm"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("__pycache__"))
    before = _code_versions(helm4, chart)
    assert "gateway" in before and len(before) > 1, before

    assert _code_versions(helm4, chart) == before  # same files: nothing to redeploy

    _edit(chart, GATEWAY_ONLY)
    after_gateway_edit = _code_versions(helm4, chart)
    assert {n for n in before if after_gateway_edit[n] != before[n]} == {"gateway"}

    _edit(chart, LLM_LOADER)
    after_loader_edit = _code_versions(helm4, chart)
    assert {n for n in before if after_loader_edit[n] != after_gateway_edit[n]} == set(before)
