"""local_deploy: a chart-style serveConfigV2 deployed locally, with the transformers fallback
(where vLLM cannot run) serving a build_openai_app app through the runtime's gateway."""

from __future__ import annotations

import openai
import pytest
import yaml

from rayllm_runtime.testing import free_port

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def test_openai_app_falls_back_to_cpu_gateway(tiny_model_path, tmp_path):
    import ray

    from rayllm_runtime import local_deploy

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "model_loading_config": {"model_id": "tiny-chat", "model_source": str(tiny_model_path)},
                "engine_kwargs": {"max_model_len": 512, "tensor_parallel_size": 1},
                "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}},
                "accelerator_type": "L4",
            }
        )
    )
    port = free_port()
    serve_config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000},
        "applications": [
            {
                "name": "llm",
                "import_path": "ray.serve.llm:build_openai_app",
                "route_prefix": "/llm",
                "args": {"llm_configs": [str(config_file)]},
                "runtime_env": {"env_vars": {"X": "1"}},
            },
            {
                "name": "gateway",
                "import_path": "rayllm_runtime.apps:build_gateway",
                "route_prefix": "/",
                "args": {
                    "models": [{"model_id": "echo", "engine": "fake", "deployment": {"ray_actor_options": {"num_cpus": 0.1}}}],
                    "upstreams": [{"model_ids": ["tiny-chat"], "base_url": f"http://127.0.0.1:{port}/llm"}],
                },
            },
        ],
    }
    try:
        result = local_deploy.run_serve_config(serve_config, port=port, num_cpus=4,
                                               transformers_fallback={"llm": {}})
        assert result.applications == ["llm", "gateway"]
        assert result.replaced == {"llm": ["tiny-chat"]}
        assert any("runtime_env is not applied" in n for n in result.notices)
        direct = openai.OpenAI(base_url=f"{result.base_url}/llm/v1", api_key="none", max_retries=0)
        reply = direct.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
        )
        assert reply.model == "tiny-chat" and reply.usage.completion_tokens == 4
        # The front door forwards to the other app of the same "RayService".
        front = openai.OpenAI(base_url=f"{result.base_url}/v1", api_key="none", max_retries=0)
        via = front.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
        )
        assert via.choices[0].message.content == reply.choices[0].message.content
    finally:
        local_deploy.shutdown()
    assert not ray.is_initialized()


def test_chart_verified_builder_also_falls_back():
    from rayllm_runtime import local_deploy

    assert "rayllm_runtime.serve_llm:build_openai_app" in local_deploy.LLM_IMPORT_PATHS
    assert "rayllm_runtime.serve_llm:build_llm_app" in local_deploy.LLM_IMPORT_PATHS
    args = local_deploy.openai_app_to_gateway_args(
        {"llm_configs": [{"model_loading_config": {"model_id": "m", "model_source": {"bucket_uri": "s3://x"}}}],
         "config_wait_timeout_s": 5},
        model_overrides={"m": "/models/m"},
    )
    assert args["models"][0]["model_source"] == "/models/m" and args["models"][0]["engine"] == "cpu"
    with pytest.raises(local_deploy.LocalDeployError, match="--model m=/path"):
        local_deploy.openai_app_to_gateway_args(
            {"llm_configs": [{"model_loading_config": {"model_id": "m", "model_source": {"bucket_uri": "s3://x"}}}]}
        )


def test_invalid_args_fail_before_deploying():
    from pydantic import ValidationError

    from rayllm_runtime import local_deploy

    bad = {"applications": [{"name": "g", "import_path": "rayllm_runtime.apps:build_gateway", "args": {"models": [{"model_id": "x", "engine": "warp"}]}}]}
    with pytest.raises(ValidationError):
        local_deploy.run_serve_config(bad)
    with pytest.raises(local_deploy.LocalDeployError, match="llm_configs"):
        local_deploy.openai_app_to_gateway_args({"llm_configs": []})
