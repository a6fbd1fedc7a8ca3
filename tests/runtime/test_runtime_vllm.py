"""vLLM engine: parameter mapping (CPU) and real generation (GPU only)."""

from __future__ import annotations

import asyncio

import pytest

from rayllm_runtime.engines import SamplingOptions


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def test_sampling_params_mapping():
    pytest.importorskip("vllm")
    from vllm.sampling_params import RequestOutputKind

    from rayllm_runtime.engines.vllm_engine import to_vllm_sampling_params
    from rayllm_runtime.openai.protocol import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "max_completion_tokens": 17,
            "temperature": 0.3,
            "top_p": 0.8,
            "top_k": 20,
            "stop": "END",
            "seed": 5,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "logit_bias": {"12": 1.5},
            "repetition_penalty": 1.1,
        }
    )
    params = to_vllm_sampling_params(request.sampling_options())
    assert params.max_tokens == 17 and params.temperature == pytest.approx(0.3)
    assert params.top_p == pytest.approx(0.8) and params.top_k == 20
    assert params.stop == ["END"] and params.seed == 5
    assert params.presence_penalty == 0.5 and params.frequency_penalty == 0.25
    assert params.repetition_penalty == pytest.approx(1.1)
    assert params.logit_bias == {12: 1.5}
    assert params.output_kind == RequestOutputKind.DELTA
    defaults = to_vllm_sampling_params(SamplingOptions(), default_max_tokens=64)
    assert defaults.max_tokens == 64


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_vllm_engine_generates(tmp_path):
    pytest.importorskip("vllm")
    from rayllm_runtime.config import ModelConfig
    from rayllm_runtime.engines import create_engine
    from rayllm_runtime.testing import build_tiny_model

    # Head dim 64: supported by every vLLM attention backend.
    path = build_tiny_model(tmp_path / "tiny", hidden_size=128, num_heads=2)
    config = ModelConfig(
        model_id="tiny",
        engine="vllm",
        model_source=str(path),
        engine_kwargs={"gpu_memory_utilization": 0.3, "max_model_len": 256, "enforce_eager": True},
    )

    async def run():
        engine = create_engine(config)
        await engine.start()
        try:
            chunks = [
                c
                async for c in engine.generate(
                    [{"role": "user", "content": "Hello"}], SamplingOptions(max_tokens=8, temperature=0), "req-1"
                )
            ]
            completion = [c async for c in engine.generate("The quick", SamplingOptions(max_tokens=4, temperature=0), "req-2")]
            await engine.check_health()
            return chunks, completion
        finally:
            await engine.shutdown()

    chunks, completion = asyncio.run(run())
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].usage.prompt_tokens > 0
    assert chunks[-1].finish_reason == "length"
    assert completion[-1].usage.completion_tokens == 4
