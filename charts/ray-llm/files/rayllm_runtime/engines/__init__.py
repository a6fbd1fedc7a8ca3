"""Inference engines behind one async interface (see ``engines.base.Engine``)."""

from __future__ import annotations

from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    SamplingOptions,
    TranscriptionOptions,
    TranscriptionResult,
    Usage,
)

__all__ = [
    "Engine",
    "EngineInputError",
    "GenerationChunk",
    "SamplingOptions",
    "TranscriptionOptions",
    "TranscriptionResult",
    "Usage",
    "create_engine",
]


def create_engine(config) -> Engine:
    """Build the engine for a ``ModelConfig`` (imports heavy libraries lazily)."""
    from rayllm_runtime.config import EngineKind

    if config.engine == EngineKind.fake:
        from rayllm_runtime.engines.fake import FakeEngine

        return FakeEngine(config.model_id, config.engine_kwargs, task=config.task.value)
    if config.engine == EngineKind.cpu:
        from rayllm_runtime.engines.cpu import CpuEngine

        return CpuEngine(config.model_id, config.source, config.engine_kwargs, task=config.task.value)
    if config.engine == EngineKind.vllm:
        from rayllm_runtime.engines.vllm_engine import VllmEngine

        return VllmEngine(config.model_id, config.source, config.engine_kwargs, task=config.task.value)
    raise ValueError(f"got engine={config.engine!r}; expected cpu, vllm or fake; fix the model config")
