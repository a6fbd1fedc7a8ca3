"""`helm package` produces an archive that installs (renders) on its own."""

from ..conftest import CHART, VALUES_DIR, docs_of, rayservice_of, run_helm


def test_helm_package_renders_from_the_archive(helm, tmp_path):
    run_helm(helm, ["package", str(CHART), "--destination", str(tmp_path)])
    archives = list(tmp_path.glob("ray-llm-*.tgz"))
    assert len(archives) == 1
    out = run_helm(helm, ["template", "llm", str(archives[0]), "-f", str(VALUES_DIR / "prod.yaml")]).stdout
    docs = docs_of(out)
    assert rayservice_of(docs)
    runtime = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-runtime")][0]
    assert any(k.endswith("serve_llm.py") for k in runtime["data"])  # files/ ships in the package
