"""Issue 4: the runtime the chart ships in its ConfigMap equals runtime/rayllm_runtime."""

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
