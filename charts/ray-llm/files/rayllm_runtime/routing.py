"""Multi-model routing: request `model` -> local deployment or upstream app."""

from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator, Dict, List, Optional, Union

from rayllm_runtime.config import GatewayArgs, UpstreamConfig

logger = logging.getLogger("rayllm.routing")


class LocalModelBackend:
    """A model deployment of this application, reached by DeploymentHandle."""

    kind = "local"

    def __init__(self, model_id: str, handle: Any):
        self.model_id = model_id
        self.handle = handle

    def stream(self, payload: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        return self.handle.options(stream=True).generate.remote(payload)


class UpstreamBackend:
    """Another OpenAI-compatible server (e.g. a build_openai_app app).

    Bodies are forwarded unchanged and responses passed through, so features
    of the upstream (tools, logprobs, ...) stay available for its models.
    """

    kind = "upstream"

    def __init__(self, config: UpstreamConfig):
        self.config = config
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                base_url=self.config.base_url,
                timeout=httpx.Timeout(self.config.timeout_s, connect=10.0),
            )
        return self._client

    def headers(self) -> Dict[str, str]:
        headers = {"content-type": "application/json"}
        token = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


Backend = Union[LocalModelBackend, UpstreamBackend]


class ModelRouter:
    def __init__(self, args: GatewayArgs, handles: Dict[str, Any]):
        self._backends: Dict[str, Backend] = {}
        for model in args.models:
            self._backends[model.model_id] = LocalModelBackend(model.model_id, handles[model.model_id])
        for upstream in args.upstreams:
            backend = UpstreamBackend(upstream)
            for model_id in upstream.model_ids:
                self._backends[model_id] = backend

    def resolve(self, model_id: str) -> Optional[Backend]:
        return self._backends.get(model_id)

    def model_ids(self) -> List[str]:
        return list(self._backends)

    async def close(self) -> None:
        seen = set()
        for backend in self._backends.values():
            if isinstance(backend, UpstreamBackend) and id(backend) not in seen:
                seen.add(id(backend))
                await backend.close()
