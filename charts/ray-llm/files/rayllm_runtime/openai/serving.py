"""Chat / text completion logic: local model deployments or upstream apps."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, Optional, Union

from starlette.responses import JSONResponse, Response, StreamingResponse

from rayllm_runtime.openai.errors import OpenAIHTTPError, internal_error
from rayllm_runtime.openai.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatResponseMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    UsageInfo,
    new_id,
    now,
)
from rayllm_runtime.routing import LocalModelBackend, ModelRouter, UpstreamBackend

logger = logging.getLogger("rayllm.serving")

AnyCompletionRequest = Union[ChatCompletionRequest, CompletionRequest]


@dataclass
class RequestContext:
    """What is known about one request, for the audit log and metrics."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    key_id: Optional[str] = None
    model: Optional[str] = None
    prompt: Optional[str] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    first_token_at: Optional[float] = None
    finished: bool = False
    in_flight_model: Optional[str] = None


Finisher = Callable[..., None]


def sse(data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


def _is_backpressure(exc: BaseException) -> bool:
    return type(exc).__name__ in ("BackPressureError", "DeploymentUnavailableError")


def map_exception(exc: BaseException, ctx: RequestContext) -> OpenAIHTTPError:
    """Turn anything raised while serving into a client-safe error."""
    if isinstance(exc, OpenAIHTTPError):
        return exc
    if _is_backpressure(exc):
        return OpenAIHTTPError(503, "The model is overloaded; retry later.", headers={"Retry-After": "1"})
    logger.error("request %s failed", ctx.request_id, exc_info=exc)
    return internal_error(ctx.request_id)


class OpenAIServing:
    def __init__(self, router: ModelRouter, finish: Finisher, observe_ttft: Callable[[str, float], None]):
        self.router = router
        self.finish = finish
        self.observe_ttft = observe_ttft

    def _backend(self, model: str):
        backend = self.router.resolve(model)
        if backend is None:
            raise OpenAIHTTPError(
                404,
                f"The model '{model}' does not exist; GET /v1/models lists the served models.",
                param="model",
                code="model_not_found",
            )
        return backend

    async def create(self, req: AnyCompletionRequest, raw_body: bytes, ctx: RequestContext) -> Response:
        backend = self._backend(req.model)
        if isinstance(backend, UpstreamBackend):
            path = "/v1/chat/completions" if isinstance(req, ChatCompletionRequest) else "/v1/completions"
            return await self._forward(backend, path, raw_body, req, ctx)
        return await self._local(backend, req, ctx)

    # -- local deployments -------------------------------------------------
    async def _local(self, backend: LocalModelBackend, req: AnyCompletionRequest, ctx: RequestContext) -> Response:
        is_chat = isinstance(req, ChatCompletionRequest)
        payload: Dict[str, Any] = {
            "request_id": ctx.request_id,
            "kind": "chat" if is_chat else "completion",
            "sampling": req.sampling_options().__dict__,
        }
        if is_chat:
            payload["messages"] = req.messages_payload()
        else:
            payload["prompt"] = req.prompt_text()
        stream = backend.stream(payload)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = {"text": "", "finish_reason": "stop", "usage": None}
        self._raise_engine_error(first)

        if not req.stream:
            return await self._collect(first, stream, req, ctx, is_chat)
        return StreamingResponse(
            self._sse_stream(first, stream, req, ctx, is_chat),
            media_type="text/event-stream",
            headers={"x-request-id": ctx.request_id, "cache-control": "no-cache"},
        )

    @staticmethod
    def _raise_engine_error(chunk: Dict[str, Any]) -> None:
        error = chunk.get("error")
        if error:
            raise OpenAIHTTPError(int(error.get("status", 400)), error.get("message", "bad request"), param=error.get("param"))

    def _account(self, ctx: RequestContext, usage: Optional[Dict[str, int]]) -> Optional[UsageInfo]:
        if not usage:
            return None
        ctx.prompt_tokens = usage.get("prompt_tokens")
        ctx.completion_tokens = usage.get("completion_tokens")
        return UsageInfo(**usage)

    async def _collect(self, first, stream, req, ctx: RequestContext, is_chat: bool) -> Response:
        texts = []
        finish_reason = None
        usage = None
        chunk = first
        while chunk is not None:
            self._raise_engine_error(chunk)
            texts.append(chunk.get("text") or "")
            finish_reason = chunk.get("finish_reason") or finish_reason
            usage = chunk.get("usage") or usage
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                chunk = None
        text = "".join(texts)
        usage_info = self._account(ctx, usage) or UsageInfo()
        created = now()
        if is_chat:
            body = ChatCompletionResponse(
                id=new_id("chatcmpl"),
                created=created,
                model=req.model,
                choices=[ChatChoice(message=ChatResponseMessage(content=text), finish_reason=finish_reason)],
                usage=usage_info,
            )
        else:
            body = CompletionResponse(
                id=new_id("cmpl"),
                created=created,
                model=req.model,
                choices=[CompletionChoice(text=text, finish_reason=finish_reason)],
                usage=usage_info,
            )
        self.finish(ctx, 200)
        return JSONResponse(body.model_dump(mode="json"), headers={"x-request-id": ctx.request_id})

    async def _sse_stream(self, first, stream, req, ctx: RequestContext, is_chat: bool) -> AsyncIterator[str]:
        response_id = new_id("chatcmpl" if is_chat else "cmpl")
        created = now()
        status = 200
        error_type = None
        exhausted = False

        def chat_chunk(delta: ChatDelta, finish_reason=None, usage=None, choices=True) -> str:
            return sse(
                ChatCompletionChunk(
                    id=response_id,
                    created=created,
                    model=req.model,
                    choices=[ChatChunkChoice(delta=delta, finish_reason=finish_reason)] if choices else [],
                    usage=usage,
                ).model_dump(mode="json", exclude_none=not choices)
            )

        def text_chunk(text: str, finish_reason=None, usage=None, choices=True) -> str:
            return sse(
                CompletionResponse(
                    id=response_id,
                    created=created,
                    model=req.model,
                    choices=[CompletionChoice(text=text, finish_reason=finish_reason)] if choices else [],
                    usage=usage,
                ).model_dump(mode="json")
            )

        try:
            if is_chat:
                yield chat_chunk(ChatDelta(role="assistant", content=""))
            usage_info = None
            chunk = first
            while chunk is not None:
                error = chunk.get("error")
                if error:
                    status, error_type = int(error.get("status", 400)), "invalid_request_error"
                    yield sse(OpenAIHTTPError(status, error.get("message", "bad request")).body())
                    break
                text = chunk.get("text") or ""
                finish_reason = chunk.get("finish_reason")
                if text and ctx.first_token_at is None:
                    ctx.first_token_at = time.monotonic()
                    self.observe_ttft(req.model, ctx.first_token_at - ctx.started)
                if text or finish_reason:
                    if is_chat:
                        yield chat_chunk(ChatDelta(content=text or None), finish_reason)
                    else:
                        yield text_chunk(text, finish_reason)
                usage_info = self._account(ctx, chunk.get("usage")) or usage_info
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    chunk = None
            if status == 200:
                if req.include_usage():
                    usage = usage_info or UsageInfo()
                    yield chat_chunk(ChatDelta(), usage=usage, choices=False) if is_chat else text_chunk(
                        "", usage=usage, choices=False
                    )
                yield sse("[DONE]")
        except asyncio.CancelledError:
            status, error_type = 499, "client_disconnected"  # nginx's convention
            raise
        except Exception as exc:  # headers are already sent: report in-band
            mapped = map_exception(exc, ctx)
            status, error_type = mapped.status_code, mapped.type
            yield sse(mapped.body())
        finally:
            if not exhausted:
                cancel = getattr(stream, "cancel", None)
                if cancel is not None:
                    cancel()
            self.finish(ctx, status, error_type)

    # -- upstream apps -----------------------------------------------------
    async def _forward(
        self, backend: UpstreamBackend, path: str, raw_body: bytes, req: AnyCompletionRequest, ctx: RequestContext
    ) -> Response:
        import httpx

        client = backend.client
        try:
            request = client.build_request("POST", path, content=raw_body, headers=backend.headers())
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise OpenAIHTTPError(504, f"The upstream for model '{req.model}' timed out; retry later.") from exc
        except httpx.HTTPError as exc:
            logger.warning("upstream %s unreachable: %s", backend.config.base_url, type(exc).__name__)
            raise OpenAIHTTPError(502, f"The upstream for model '{req.model}' is unreachable; retry later.") from exc

        if response.status_code != 200 or not req.stream:
            body = await response.aread()
            await response.aclose()
            return self._passthrough_body(response.status_code, body, ctx)

        async def passthrough() -> AsyncIterator[bytes]:
            status = 200
            try:
                async for data in response.aiter_raw():
                    if ctx.first_token_at is None:
                        ctx.first_token_at = time.monotonic()
                        self.observe_ttft(req.model, ctx.first_token_at - ctx.started)
                    yield data
            except asyncio.CancelledError:
                status = 499
                raise
            except Exception as exc:
                status = 502
                logger.warning("upstream stream broke for %s: %s", ctx.request_id, type(exc).__name__)
                yield sse(OpenAIHTTPError(502, "The upstream stream was interrupted.").body()).encode()
            finally:
                await response.aclose()
                self.finish(ctx, status, None if status == 200 else "upstream_error")

        return StreamingResponse(
            passthrough(),
            media_type=response.headers.get("content-type", "text/event-stream"),
            headers={"x-request-id": ctx.request_id, "cache-control": "no-cache"},
        )

    def _passthrough_body(self, status: int, body: bytes, ctx: RequestContext) -> Response:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if status == 200 and isinstance(parsed, dict):
            usage = parsed.get("usage") or {}
            ctx.prompt_tokens = usage.get("prompt_tokens")
            ctx.completion_tokens = usage.get("completion_tokens")
            self.finish(ctx, 200)
            return Response(body, status_code=200, media_type="application/json", headers={"x-request-id": ctx.request_id})
        # Keep the OpenAI error shape even when the upstream answered otherwise.
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            self.finish(ctx, status, "upstream_error")
            return JSONResponse(parsed, status_code=status, headers={"x-request-id": ctx.request_id})
        mapped_status = status if 400 <= status < 600 else 502
        raise OpenAIHTTPError(mapped_status, f"The upstream answered HTTP {status}.")
