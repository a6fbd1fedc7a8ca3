"""Multi-model routing: request `model` -> model deployment, colocated engine or upstream app."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Awaitable, Dict, List, Optional, Union, cast

from rayllm_runtime.config import GatewayArgs, ModelConfig, UpstreamConfig

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("rayllm.routing")


#: Set to 1 to send gateway -> model calls through the Ray object store
#: (Serve's default) instead of by value over Serve's inter-deployment gRPC.
BY_REFERENCE_ENV = "RAYLLM_HANDLE_BY_REFERENCE"


def _derived_handle(handle: Any, **options: Any) -> Any:
    """``handle.options(**options)``, by value unless BY_REFERENCE_ENV is set.

    Requests and replies here are small dicts that are never passed on as
    object refs, so the object store only adds cost: by value, a call costs
    the gateway and the model replica about half the CPU (see
    benchmarks/results/ingress.md). A Ray without the option keeps its default.
    """
    if os.environ.get(BY_REFERENCE_ENV, "0") != "1":
        try:
            return handle.options(_by_reference=False, **options)
        except TypeError:
            pass
    return handle.options(**options)


class LocalModelBackend:
    """A model deployment of this application, reached by DeploymentHandle."""

    kind = "local"

    def __init__(self, model_id: str, handle: Any, task: str = "generate"):
        self.model_id = model_id
        self.handle = handle
        self.task = task  # ModelTask value: "generate" or "transcription"
        # Derived handles (Ray's DeploymentHandle) share the router; made once, not per request.
        self._stream_handle: Any = None
        self._complete_handle: Any = None
        self._transcribe_handle: Any = None

    def stream(self, payload: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """Deltas of a streamed request."""
        if self._stream_handle is None:
            self._stream_handle = _derived_handle(self.handle, stream=True, method_name="generate")
        return self._stream_handle.remote(payload)

    def complete(self, payload: Dict[str, Any]) -> Awaitable[Dict[str, Any]]:
        """The whole answer of a non-streamed request in one reply."""
        if self._complete_handle is None:
            self._complete_handle = _derived_handle(self.handle, method_name="complete")
        return self._complete_handle.remote(payload)

    def transcribe(self, payload: Dict[str, Any]) -> Awaitable[Dict[str, Any]]:
        """Speech to text of one decoded upload, in one reply."""
        if self._transcribe_handle is None:
            self._transcribe_handle = _derived_handle(self.handle, method_name="transcribe")
        return self._transcribe_handle.remote(payload)


class _InProcessStream:
    """A colocated model's stream with the ``cancel()`` of a handle's stream,
    so the gateway stops both kinds the same way when a client leaves."""

    def __init__(self, stream: AsyncGenerator[Dict[str, Any], None]):
        self._stream = stream

    def __aiter__(self) -> "_InProcessStream":
        return self

    def __anext__(self) -> Awaitable[Dict[str, Any]]:
        return self._stream.__anext__()

    def cancel(self) -> None:
        # Closing the generator runs the engine's own cleanup (abort).
        task = asyncio.ensure_future(self._stream.aclose())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


class ColocatedModelBackend:
    """A model whose engine runs in the gateway's own replica (``colocated: true``).

    Same calls as LocalModelBackend, made directly on the in-process
    ModelServer: no handle, no second Serve replica, no serialisation. That
    removes the inter-deployment hop (the largest cost per request on a busy
    node, see benchmarks/results/ingress.md); the model then scales with the
    gateway's replicas.
    """

    kind = "colocated"

    def __init__(self, model: ModelConfig):
        from rayllm_runtime.deployment import ModelServer  # imports the engine registry

        self.model_id = model.model_id
        self.task = model.task.value
        self.server = ModelServer(model.model_dump(mode="json"))

    def stream(self, payload: Dict[str, Any]) -> _InProcessStream:
        return _InProcessStream(self.server.generate(payload))

    def complete(self, payload: Dict[str, Any]) -> Awaitable[Dict[str, Any]]:
        return self.server.complete(payload)

    def transcribe(self, payload: Dict[str, Any]) -> Awaitable[Dict[str, Any]]:
        return self.server.transcribe(payload)


class UpstreamBackend:
    """Another OpenAI-compatible server (e.g. a build_openai_app app).

    Bodies are forwarded unchanged and responses passed through, so features
    of the upstream (tools, logprobs, ...) stay available for its models.
    """

    kind = "upstream"

    def __init__(self, config: UpstreamConfig):
        self.config = config
        self._client: Optional[httpx.AsyncClient] = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                # cast: an upstream without `app` has a base_url (UpstreamConfig checks exactly one is set).
                base_url=cast(str, self.config.base_url),
                timeout=httpx.Timeout(self.config.timeout_s, connect=10.0),
            )
        return self._client

    def headers(self, content_type: str = "application/json") -> Dict[str, str]:
        headers = {"content-type": content_type}
        token = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class ServeAppBackend:
    """Models of another Serve application of this cluster whose ingress is Ray's LLMServer.

    The chart renders one such application per model behind a gateway, with no HTTP
    route, so the gateway is the only way in. Requests go through a Serve handle with
    Ray's LLMServer API (``chat`` / ``completions`` taking Ray's OpenAI request models,
    ``ray.serve.llm.openai_api_models``), the calls Ray's own OpenAI ingress makes: no
    HTTP hop, no dependency on the proxy being up on this node.
    """

    kind = "app"

    def __init__(self, config: UpstreamConfig):
        self.config = config
        self._handle: Any = None  # Ray's DeploymentHandle, made on first use

    @property
    def handle(self) -> Any:
        if self._handle is None:
            from ray import serve

            # Deltas stream back as the engine produces them; a non-streamed request
            # yields one whole response.
            self._handle = serve.get_app_handle(str(self.config.app)).options(stream=True)
        return self._handle

    async def close(self) -> None:
        return None


#: A model this application serves itself: behind a handle, or in this replica.
LocalBackend = Union[LocalModelBackend, ColocatedModelBackend]
Backend = Union[LocalModelBackend, ColocatedModelBackend, UpstreamBackend, ServeAppBackend]


class ModelRouter:
    def __init__(self, args: GatewayArgs, handles: Dict[str, Any]):
        self._backends: Dict[str, Backend] = {}
        for model in args.models:
            if model.colocated:
                self._backends[model.model_id] = ColocatedModelBackend(model)
            else:
                self._backends[model.model_id] = LocalModelBackend(
                    model.model_id, handles[model.model_id], task=model.task.value
                )
        for upstream in args.upstreams:
            backend: Backend = ServeAppBackend(upstream) if upstream.app else UpstreamBackend(upstream)
            for model_id in upstream.model_ids:
                self._backends[model_id] = backend

    def _colocated(self) -> List[ColocatedModelBackend]:
        return [b for b in self._backends.values() if isinstance(b, ColocatedModelBackend)]

    async def start(self) -> None:
        """Start the engines of colocated models (the replica is not ready before)."""
        for backend in self._colocated():
            await backend.server.start()

    async def check_health(self) -> None:
        for backend in self._colocated():
            await backend.server.check_health()

    def resolve(self, model_id: str) -> Optional[Backend]:
        backend = self._backends.get(model_id)
        if backend is None and ":" in model_id:
            # "<base>:<adapter>", as Ray's ingress reads it (the base is the text before the first ':'):
            # only an upstream LLMServer that serves adapters takes it.
            base = self._backends.get(model_id.split(":", 1)[0])
            if isinstance(base, ServeAppBackend) and base.config.lora_adapters:
                return base
        return backend

    def model_ids(self) -> List[str]:
        return list(self._backends)

    async def close(self) -> None:
        for colocated in self._colocated():
            await colocated.server.shutdown()
        seen = set()
        for backend in self._backends.values():
            if isinstance(backend, UpstreamBackend) and id(backend) not in seen:
                seen.add(id(backend))
                await backend.close()
