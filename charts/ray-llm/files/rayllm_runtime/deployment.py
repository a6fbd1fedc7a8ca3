"""The per-model Ray Serve deployment: one engine per replica."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional

from ray import serve

from rayllm_runtime.config import ModelConfig
from rayllm_runtime.engines import (
    EngineInputError,
    GenerationChunk,
    SamplingOptions,
    TranscriptionOptions,
    Usage,
    create_engine,
)

logger = logging.getLogger("rayllm.deployment")

_END = object()


async def coalesce(chunks: AsyncIterator[GenerationChunk], interval_s: float = 0.0) -> AsyncIterator[GenerationChunk]:
    """Re-yield ``chunks``, merging the ones that are already waiting.

    Every item a replica yields is one object sent to the gateway and one SSE
    event, which costs far more CPU than producing a token. The engine runs
    in its own task; whenever the consumer is ready it takes everything
    produced so far as one delta, so a fast engine (or a busy gateway) sends
    few large deltas and a slow one still streams token by token. The first
    delta is never delayed, and text, finish_reason, usage, logprobs and
    errors are kept (an error is raised after the text produced before it).
    Only consecutive deltas of the same choice (``index``, n > 1) merge.

    ``interval_s`` > 0 also waits that long after each delta before taking the next
    (the first still goes at once, and the end of the stream cuts the wait short): fewer,
    larger messages per request, which is what Ray Serve LLM's stream batching does
    (``stream_batching_interval_ms``, 50 ms by default there).
    """
    queue: "asyncio.Queue[Any]" = asyncio.Queue()
    ended = asyncio.Event()

    async def pump() -> None:
        try:
            async for chunk in chunks:
                queue.put_nowait(chunk)
        except Exception as exc:  # handed to the consumer, raised there
            queue.put_nowait(exc)
        else:
            queue.put_nowait(_END)
        finally:
            ended.set()

    task = asyncio.ensure_future(pump())
    carry: Any = None
    first = True
    try:
        while True:
            if interval_s > 0 and not first and carry is None:
                try:
                    await asyncio.wait_for(ended.wait(), timeout=interval_s)
                except asyncio.TimeoutError:
                    pass
            first = False
            item = carry if carry is not None else await queue.get()
            carry = None
            texts: List[str] = []
            finish: Optional[str] = None
            usage: Optional[Usage] = None
            index = 0
            logprobs: Optional[list] = None
            merged = 0
            while item is not _END and not isinstance(item, Exception):
                if merged and item.index != index:
                    carry, item = item, None  # another choice: starts the next merged delta
                    break
                index = item.index
                merged += 1
                texts.append(item.text)
                if item.logprobs is not None:
                    logprobs = (logprobs or []) + item.logprobs
                finish = item.finish_reason or finish
                usage = item.usage or usage
                if queue.empty():
                    item = None
                    break
                item = queue.get_nowait()
            if merged:
                yield GenerationChunk(
                    text="".join(texts), finish_reason=finish, usage=usage, index=index, logprobs=logprobs
                )
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
    finally:
        if not task.done():
            task.cancel()  # client gone: the engine's own cleanup (abort) runs


class ModelServer:
    """One engine and the calls the gateway makes on it.

    The model deployment below is this class in its own Serve replicas; a
    colocated model (``ModelConfig.colocated``) is this class inside the
    gateway's replica, called directly with no Serve hop in between.

    Payload: {"request_id", "kind": "chat"|"completion", "messages"|"prompt",
    "sampling": {...}}. ``generate`` yields {"text", "finish_reason", "usage"}
    dicts (plus "index" for choices after the first and "logprobs" when
    asked) and ``complete`` returns one (plus "choices" when n > 1); a
    request the engine cannot serve gives one {"error": {...}} dict instead
    (400); unexpected failures raise and the gateway answers 500.
    ``transcribe`` takes {"request_id", "audio": float32 bytes at 16 kHz,
    "options": {...}} and returns {"text", "language", "duration_s", "usage"}.
    """

    def __init__(self, config: Dict[str, Any]):
        self.config = ModelConfig.model_validate(config)
        self.engine = create_engine(self.config)
        self.requests_served = 0

    async def start(self) -> None:
        await self.engine.start()

    def _start(self, payload: Dict[str, Any]) -> AsyncIterator[GenerationChunk]:
        self.requests_served += 1
        sampling = SamplingOptions.from_dict(payload.get("sampling") or {})
        source = payload["messages"] if payload.get("kind") == "chat" else payload.get("prompt", "")
        return self.engine.generate(source, sampling, payload["request_id"])

    @staticmethod
    def _input_error(exc: EngineInputError) -> Dict[str, Any]:
        return {"error": {"status": 400, "message": exc.message, "param": exc.param}}

    async def generate(self, payload: Dict[str, Any]) -> AsyncGenerator[Dict[str, Any], None]:
        """Streamed answer (called with stream=True); deltas ready together are merged."""
        try:
            interval = self.config.stream_batching_interval_ms / 1000
            async for chunk in coalesce(self._start(payload), interval):
                yield chunk.to_dict()
        except EngineInputError as exc:
            yield self._input_error(exc)

    async def complete(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """The whole answer as one chunk dict: one reply instead of a stream of deltas."""
        texts: Dict[int, List[str]] = {0: []}
        finishes: Dict[int, Optional[str]] = {}
        logprobs: Dict[int, list] = {}
        usage: Optional[Usage] = None
        try:
            async for chunk in self._start(payload):
                texts.setdefault(chunk.index, []).append(chunk.text)
                finishes[chunk.index] = chunk.finish_reason or finishes.get(chunk.index)
                if chunk.logprobs is not None:
                    logprobs.setdefault(chunk.index, []).extend(chunk.logprobs)
                usage = chunk.usage or usage
        except EngineInputError as exc:
            return self._input_error(exc)
        choices = [
            GenerationChunk(
                text="".join(texts[i]), finish_reason=finishes.get(i), index=i, logprobs=logprobs.get(i)
            ).to_dict()
            for i in sorted(texts)
        ]
        result = {**choices[0], "usage": usage.to_dict() if usage else None}
        if len(choices) > 1:
            result["choices"] = choices
        return result

    async def transcribe(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Speech to text of one upload (already decoded to 16 kHz mono by the gateway)."""
        import numpy as np

        self.requests_served += 1
        audio = np.frombuffer(payload["audio"], dtype=np.float32)
        options = TranscriptionOptions.from_dict(payload.get("options") or {})
        try:
            result = await self.engine.transcribe(audio, options, payload["request_id"])
        except EngineInputError as exc:
            return self._input_error(exc)
        return result.to_dict()

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

    async def shutdown(self) -> None:
        try:
            await self.engine.shutdown()
        except Exception:
            logger.debug("engine shutdown failed", exc_info=True)


@serve.deployment(name="RayLLMModel", max_ongoing_requests=16, health_check_period_s=10)
class RayLLMModelDeployment(ModelServer):
    """A model in its own Serve deployment: one engine per replica. The gateway
    calls ``generate`` with stream=True for streamed requests and ``complete``
    for the others (see ModelServer for the payloads)."""

    # Ray Serve awaits an async constructor (the engine starts inside the replica's event loop).
    async def __init__(self, config: Dict[str, Any]):  # type: ignore[misc]
        ModelServer.__init__(self, config)
        await self.start()

    async def __del__(self):
        await self.shutdown()


def deployment_name(model_id: str) -> str:
    """A Serve deployment name derived from the model id (distinct per model)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in model_id)
    return f"RayLLMModel-{safe}"[:100]


def bind_model(config: ModelConfig):
    """Bound deployment for one model with its own Serve options."""
    options = config.deployment.to_serve_options()
    # @serve.deployment made the class a Deployment; mypy keeps a decorated class's own type.
    return RayLLMModelDeployment.options(  # type: ignore[attr-defined]
        name=deployment_name(config.model_id), **options
    ).bind(config.model_dump(mode="json"))
