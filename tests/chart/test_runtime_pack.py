"""Issue 4: the runtime the chart ships in its ConfigMap equals runtime/rayllm_runtime."""

from rayllm_cli.runtime_pack import differences


def test_packed_runtime_equals_source():
    assert differences() == [], "run `ray-llm pack-runtime`"
