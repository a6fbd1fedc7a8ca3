"""A Ray ``LLMServer`` that loads no weights: the ``server_cls`` the scale-to-zero tests give every LLMConfig.

Everything Ray's LLMServer does around the engine stays: Serve builds the deployment from
``FakeLLMServer.get_deployment_options(llm_config)``, which is Ray's own (inherited, not
overridden), so the replica runs in the placement group Ray derives from the chart's
``placement_group_config`` / ``accelerator_type`` / ``tensor_parallel_size``. Only the
engine is replaced: :class:`FakeEngine` starts, as vLLM's Ray executor does, one worker
actor per GPU bundle of the replica's placement group (so the GPUs are really held, on
whichever node the autoscaler brought up), and answers every chat or completion request
with :data:`FIXED_TEXT`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncGenerator, Dict, List

import ray
from ray.llm._internal.serve.core.engine.protocol import LLMEngine
from ray.llm._internal.serve.core.server.llm_server import LLMServer
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from tests.autoscaler.fake_gpu_worker import FakeGPUWorker

FIXED_TEXT = "scaled from zero"
SERVER_CLS = "tests.autoscaler.fake_llm_server:FakeLLMServer"


class FakeEngine(LLMEngine):
    def __init__(self, llm_config):
        self.llm_config = llm_config
        self.workers: List[Any] = []
        self.placement: List[Dict[str, Any]] = []

    async def start(self) -> None:
        pg = get_current_placement_group()
        if pg is None:
            raise RuntimeError("got a replica outside any placement group; expected the one Serve reserves from "
                               "LLMServer.get_deployment_options")
        for index, bundle in enumerate(pg.bundle_specs):
            gpus = bundle.get("GPU", 0)
            if not gpus:
                continue
            strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)
            self.workers.append(FakeGPUWorker.options(num_gpus=gpus, scheduling_strategy=strategy).remote(index))
        self.placement = list(await asyncio.gather(*[w.where.remote() for w in self.workers]))

    def routing_stats(self) -> dict:
        return {}

    async def resolve_lora(self, lora_model) -> None:
        raise NotImplementedError("the scale-to-zero test engine serves no LoRA adapters")

    def _model(self, request) -> str:
        return getattr(request, "model", None) or self.llm_config.model_id

    async def chat(self, request, raw_request_info=None) -> AsyncGenerator[Any, None]:
        from ray.serve.llm.openai_api_models import ChatCompletionResponse

        rid, now, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), self._model(request)
        if getattr(request, "stream", False):
            for delta, finish in (({"role": "assistant", "content": FIXED_TEXT}, None), ({}, "stop")):
                chunk = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield ChatCompletionResponse.model_validate({
            "id": rid, "object": "chat.completion", "created": now, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": FIXED_TEXT}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})

    async def completions(self, request, raw_request_info=None) -> AsyncGenerator[Any, None]:
        from ray.serve.llm.openai_api_models import CompletionResponse

        rid, now, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), self._model(request)
        if getattr(request, "stream", False):
            chunk = {"id": rid, "object": "text_completion", "created": now, "model": model,
                     "choices": [{"index": 0, "text": FIXED_TEXT, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
            return
        yield CompletionResponse.model_validate({
            "id": rid, "object": "text_completion", "created": now, "model": model,
            "choices": [{"index": 0, "text": FIXED_TEXT, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})

    async def embeddings(self, request, raw_request_info=None):
        raise NotImplementedError("the scale-to-zero test engine serves chat and completions only")

    async def transcriptions(self, request, raw_request_info=None):
        raise NotImplementedError("the scale-to-zero test engine serves chat and completions only")

    async def reset_prefix_cache(self) -> None:
        return None

    async def check_health(self) -> None:
        await asyncio.gather(*[w.where.remote() for w in self.workers])

    async def shutdown(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


class FakeLLMServer(LLMServer):
    """Ray's LLMServer (deployment options, placement group, request path) on :class:`FakeEngine`."""

    _default_engine_cls = FakeEngine

    async def engine_placement(self) -> List[Dict[str, Any]]:
        """Where the engine's GPU workers run (bundle index, node id, placement group id)."""
        return list(self.engine.placement) if self.engine else []
