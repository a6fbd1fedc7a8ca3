"""The gateway's Serve ingress deployment: one GatewayCore per replica, on the replica object.

Import path of its builder: ``rayllm_runtime.apps:build_gateway``. Serve builds the replica's
FastAPI app after ``__init__`` through ``__serve_build_asgi_app__`` (late-bound ingress,
Ray >= 2.59), so the routes close over this replica's own core: no module state.
"""

from __future__ import annotations

from typing import Any, Dict

from ray import serve

from rayllm_runtime.config import GatewayArgs
from rayllm_runtime.gateway_core import GatewayCore
from rayllm_runtime.openai.http_routes import build_fastapi_app


@serve.deployment(name="RayLLMGateway", max_ongoing_requests=256)
@serve.ingress()
class RayLLMGateway:
    """OpenAI-compatible front door of one application."""

    def __init__(self, args: Dict[str, Any], handles: Dict[str, Any]):
        self.core = GatewayCore(GatewayArgs.model_validate(args), handles)

    def __serve_build_asgi_app__(self) -> Any:
        # Colocated engines load in the app's lifespan startup, which Serve runs before
        # the replica takes traffic.
        return build_fastapi_app(self.core, on_startup=self.core.router.start)

    async def check_health(self) -> None:
        await self.core.router.check_health()

    async def __del__(self):
        try:
            await self.core.close()
        except Exception:
            pass
