"""The strict KubeRay CRD schema is cached on disk (parsing the ~1 MB CRD YAML was the
largest fixed cost of `ray-llm lint`); the cache never serves a schema for other bytes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rayllm_cli import checks_crd
from rayllm_cli.checks_crd import ENV_KUBERAY_CRDS, _build_strict_schema, locate_kuberay_crds, strict_schema


@pytest.fixture()
def crds(tmp_path, monkeypatch):
    src = locate_kuberay_crds("RayService").parent
    dst = tmp_path / "crds"
    dst.mkdir()
    for name in ("ray.io_rayservices.yaml", "ray.io_rayclusters.yaml"):
        shutil.copyfile(src / name, dst / name)
    monkeypatch.setenv(ENV_KUBERAY_CRDS, str(dst))
    monkeypatch.setenv("RAYLLM_CACHE_DIR", str(tmp_path / "cache"))
    checks_crd.load_crd.cache_clear()
    yield dst
    checks_crd.load_crd.cache_clear()


def test_cache_hit_is_the_built_schema(crds, tmp_path, monkeypatch):
    built = strict_schema("RayService")
    files = list((tmp_path / "cache" / "crd-schemas").glob("rayservice-v1-*.json"))
    assert len(files) == 1
    assert built == _build_strict_schema("RayService", "v1")
    monkeypatch.setattr(checks_crd, "_build_strict_schema", lambda *a: pytest.fail("rebuilt despite the cache"))
    assert strict_schema("RayService") == built


def test_edited_crd_gets_a_new_entry(crds, tmp_path):
    strict_schema("RayService")
    path = crds / "ray.io_rayservices.yaml"
    path.write_text(path.read_text() + "\n# edited\n")  # other bytes, same schema
    checks_crd.load_crd.cache_clear()
    strict_schema("RayService")
    assert len(list((tmp_path / "cache" / "crd-schemas").glob("rayservice-v1-*.json"))) == 2


def test_cache_off_and_unwritable(crds, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLLM_CACHE_DIR", "off")
    strict_schema("RayService")
    assert not (tmp_path / "cache").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RAYLLM_CACHE_DIR", str(blocker))
    assert strict_schema("RayService")["properties"]["kind"]["enum"] == ["RayService"]  # still works
    assert not any(Path(p).name.endswith(".tmp") for p in os.listdir(tmp_path))
