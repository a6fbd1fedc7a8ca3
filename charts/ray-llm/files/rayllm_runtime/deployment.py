"""The per-model Ray Serve deployment: one engine per replica."""

from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator, Dict

from ray import serve

from rayllm_runtime.config import ModelConfig
from rayllm_runtime.engines import EngineInputError, SamplingOptions, create_engine

logger = logging.getLogger("rayllm.deployment")


@serve.deployment(name="RayLLMModel", max_ongoing_requests=16, health_check_period_s=10)
class RayLLMModelDeployment:
    """Wraps one engine; the gateway calls ``generate`` with stream=True.

    Payload: {"request_id", "kind": "chat"|"completion", "messages"|"prompt",
    "sampling": {...}}. Yields {"text", "finish_reason", "usage"} dicts, or
    one {"error": {...}} dict for a request the engine cannot serve (400);
    unexpected failures raise and the gateway answers 500.
    """

    async def __init__(self, config: Dict[str, Any]):
        self.config = ModelConfig.model_validate(config)
        self.engine = create_engine(self.config)
        await self.engine.start()
        self.requests_served = 0

    async def generate(self, payload: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        self.requests_served += 1
        sampling = SamplingOptions.from_dict(payload.get("sampling") or {})
        source = payload["messages"] if payload.get("kind") == "chat" else payload.get("prompt", "")
        try:
            async for chunk in self.engine.generate(source, sampling, payload["request_id"]):
                yield chunk.to_dict()
        except EngineInputError as exc:
            yield {"error": {"status": 400, "message": exc.message, "param": exc.param}}

    def stats(self) -> Dict[str, Any]:
        """Evidence of which deployment/replica served (tests, debugging)."""
        context = serve.get_replica_context()
        return {
            "model_id": self.config.model_id,
            "engine": self.config.engine.value,
            "deployment": context.deployment,
            "replica": str(context.replica_id),
            "pid": os.getpid(),
            "requests_served": self.requests_served,
        }

    async def check_health(self) -> None:
        await self.engine.check_health()

    async def __del__(self):
        try:
            await self.engine.shutdown()
        except Exception:
            logger.debug("engine shutdown failed", exc_info=True)


def deployment_name(model_id: str) -> str:
    """A Serve deployment name derived from the model id (distinct per model)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in model_id)
    return f"RayLLMModel-{safe}"[:100]


def bind_model(config: ModelConfig):
    """Bound deployment for one model with its own Serve options."""
    options = config.deployment.to_serve_options()
    return RayLLMModelDeployment.options(name=deployment_name(config.model_id), **options).bind(
        config.model_dump(mode="json")
    )
