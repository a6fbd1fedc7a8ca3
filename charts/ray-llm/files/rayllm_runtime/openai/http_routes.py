"""The gateway's HTTP surface: OpenAI's routes on a FastAPI app built around one GatewayCore
(per Serve replica, by rayllm_runtime.gateway; directly in tests)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Optional

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from rayllm_runtime.openai.errors import OpenAIHTTPError
from rayllm_runtime.openai.protocol import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:
    from rayllm_runtime.gateway_core import GatewayCore

logger = logging.getLogger("rayllm.router")


def build_fastapi_app(core: "GatewayCore", on_startup: Optional[Callable[[], Awaitable[None]]] = None) -> FastAPI:
    """The gateway's OpenAI surface over ``core``; ``on_startup`` is awaited in the
    app's lifespan startup (before any request)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        yield

    # No /docs or /openapi.json: the surface is OpenAI's, documented there.
    app = FastAPI(title="ray-llm gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths / wrong methods still answer in OpenAI's error shape.
        message = {
            404: "Unknown endpoint; see /v1/models, /v1/chat/completions, /v1/completions, /v1/audio/transcriptions.",
            405: "Method not allowed on this endpoint.",
        }.get(exc.status_code, str(exc.detail))
        return OpenAIHTTPError(exc.status_code, message).to_response()

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        logger.error("unhandled error on %s", request.url.path, exc_info=exc)
        return OpenAIHTTPError(500, "The server had an internal error; retry later.").to_response()

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok", "models": core.router.model_ids()})

    @app.get("/metrics")
    async def metrics() -> Response:
        if not core.args.metrics_enabled:
            return OpenAIHTTPError(404, "Metrics are disabled (metrics_enabled: false).").to_response()
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(core.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        async def handler(ctx):
            return JSONResponse(core.list_models().model_dump(mode="json"))

        return await core.guarded(request, "models", handler)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> Response:
        async def handler(ctx):
            ctx.model = model_id
            for card in core.list_models().data:
                if card.id == model_id:
                    return JSONResponse(card.model_dump(mode="json"))
            raise OpenAIHTTPError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")

        return await core.guarded(request, "models", handler)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await core.guarded(request, "chat", lambda ctx: core.completions(request, ctx, ChatCompletionRequest))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await core.guarded(request, "completions", lambda ctx: core.completions(request, ctx, CompletionRequest))

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await core.guarded(request, "transcriptions", lambda ctx: core.transcriptions(request, ctx))

    return app
