"""The runtime the chart ships in its ConfigMap equals runtime/rayllm_runtime."""

from rayllm_cli.runtime_pack import differences


def test_packed_runtime_equals_source():
    assert differences() == [], "run `ray-llm pack-runtime`"


def test_pods_never_import_the_workstation_only_modules():
    """What the pack leaves out must not be imported by anything it ships."""
    import ast

    from rayllm_cli.runtime_pack import SOURCE, WORKSTATION_ONLY, source_files

    left_out = {"rayllm_runtime." + str(p.with_suffix("")).replace("/", ".") for p in WORKSTATION_ONLY}
    for rel in source_files():
        tree = ast.parse((SOURCE / rel).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            assert not set(names) & left_out, f"{rel} imports {set(names) & left_out}, which the pods do not get"


#: The runtime ConfigMap does not grow with models, only with the runtime's
#: sources. Past LAST_APPLIED_LIMIT every install with client-side apply (Argo
#: CD's default sync, `kubectl apply`) breaks, whatever the values: fail here
#: with headroom left, so the decision (ship fewer modules, or compress the
#: package into binaryData) is made before a release ships it.
RUNTIME_CONFIGMAP_BUDGET = 0.85


def test_runtime_configmap_leaves_room_under_client_side_apply(helm4):
    from rayllm_cli.checks_builtin import LAST_APPLIED_LIMIT, object_size

    from tests.conftest import docs_of, helm_template

    docs = docs_of(helm_template(helm4).stdout)
    (runtime,) = [d for d in docs if d.get("kind") == "ConfigMap"
                  and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "runtime"]
    size = object_size(runtime)
    budget = int(RUNTIME_CONFIGMAP_BUDGET * LAST_APPLIED_LIMIT)
    assert size <= budget, (
        f"the runtime ConfigMap is {size:,} bytes as JSON; expected at most {budget:,} "
        f"({RUNTIME_CONFIGMAP_BUDGET:.0%} of the {LAST_APPLIED_LIMIT:,} bytes client-side apply allows); "
        "move workstation-only modules into runtime_pack.WORKSTATION_ONLY or ship the package compressed")
