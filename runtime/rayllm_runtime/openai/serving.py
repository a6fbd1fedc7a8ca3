"""Chat / text completion logic: local model deployments or upstream apps."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Union

from starlette.responses import JSONResponse, Response, StreamingResponse

from rayllm_runtime.model_routing import LocalBackend, ModelRouter, ServeAppBackend, UpstreamBackend
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
    chat_logprobs,
    completion_logprobs,
    new_id,
    now,
)

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


#: Ray's errors for a replica (actor) that died or became unreachable; matched
#: by class name so this module does not import Ray. An engine that raises
#: arrives as RayTaskError instead and is never retried.
_REPLICA_LOSS_ERRORS = frozenset(
    {"RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError"}
)
#: Retries of a request whose model replica was lost before anything reached
#: the client (Serve routes the retry to a live or replacement replica).
REPLICA_LOSS_RETRIES = 2
REPLICA_LOSS_BACKOFF_S = 0.25


def is_replica_loss(exc: BaseException) -> bool:
    return any(cls.__name__ in _REPLICA_LOSS_ERRORS for cls in type(exc).__mro__)


async def with_replica_retry(call: Callable[[], Awaitable[Any]], ctx: "RequestContext") -> Any:
    """``await call()``, again (up to REPLICA_LOSS_RETRIES times) if the replica died first.

    Safe because the caller has sent nothing to the client yet: a generation
    whose replica died is lost, so running it again is the only way to answer.
    """
    for attempt in range(REPLICA_LOSS_RETRIES + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt >= REPLICA_LOSS_RETRIES or not is_replica_loss(exc):
                raise
            logger.warning(
                "request %s: model replica lost before answering (%s); retry %d of %d",
                ctx.request_id,
                type(exc).__name__,
                attempt + 1,
                REPLICA_LOSS_RETRIES,
            )
            await asyncio.sleep(REPLICA_LOSS_BACKOFF_S * (attempt + 1))


async def call_upstream(backend: UpstreamBackend, model: str, send: Callable[[], Awaitable[Any]]) -> Any:
    """``await send()`` on an upstream app; a timeout is a 504 and an unreachable upstream a 502."""
    import httpx

    try:
        return await send()
    except httpx.TimeoutException as exc:
        raise OpenAIHTTPError(504, f"The upstream for model '{model}' timed out; retry later.") from exc
    except httpx.HTTPError as exc:
        logger.warning("upstream %s unreachable: %s", backend.config.base_url, type(exc).__name__)
        raise OpenAIHTTPError(502, f"The upstream for model '{model}' is unreachable; retry later.") from exc


def upstream_error(status: int, body: bytes, ctx: RequestContext, finish: Finisher) -> Response:
    """A non-200 upstream answer: its OpenAI error as is, anything else mapped to one (raised)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        finish(ctx, status, "upstream_error")
        return JSONResponse(parsed, status_code=status, headers={"x-request-id": ctx.request_id})
    mapped_status = status if 400 <= status < 600 else 502
    raise OpenAIHTTPError(mapped_status, f"The upstream answered HTTP {status}.")


def ray_llm_request(raw_body: bytes, is_chat: bool) -> Any:
    """The client's body as Ray Serve LLM's request model (what its LLMServer takes).

    Parsed from the raw body, so every field the client sent reaches the engine. Pydantic
    keeps ``Iterable``-typed message fields (content parts, tool calls) as lazy
    iterators, which cannot be pickled into a Serve call: they are turned into lists.
    """
    from pydantic import ValidationError
    from ray.serve.llm.openai_api_models import ChatCompletionRequest as RayChat
    from ray.serve.llm.openai_api_models import CompletionRequest as RayCompletion

    try:
        request = (RayChat if is_chat else RayCompletion).model_validate_json(raw_body)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise OpenAIHTTPError(
            400, f"Invalid field '{where}': {first.get('msg')}. Fix the request body and retry.", param=where or None
        ) from None
    messages = getattr(request, "messages", None) or []  # a chat request's own list (a completion has none)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            message = messages[index] = message.model_dump()
        for key in ("content", "tool_calls"):
            value = message.get(key)
            if value is not None and not isinstance(value, (str, list)):
                message[key] = list(value)
    return request


def sse_packet(item: Any) -> str:
    """One item LLMServer streams (an SSE string, a response model, or a batch of either) as SSE text."""
    if isinstance(item, list):
        return "".join(sse_packet(part) for part in item)
    if isinstance(item, str):
        return item
    if hasattr(item, "model_dump_json"):
        return f"data: {item.model_dump_json()}\n\n"
    return sse(item)


def _client_http_error(exc: BaseException) -> Optional[OpenAIHTTPError]:
    """A 4xx that an upstream Serve app raised for the client (Ray's LLMServer raises FastAPI's
    HTTPException, e.g. 404 for a LoRA adapter that is not in the bucket); through a handle it
    arrives as a RayTaskError that is also an instance of that class. Its status and message are
    meant for the client, as Ray's own ingress returns them."""
    if not any(cls.__name__ == "HTTPException" for cls in type(exc).__mro__):
        return None
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or not 400 <= status < 500:
        return None
    detail = getattr(exc, "detail", None)
    return OpenAIHTTPError(
        status,
        str(detail) if detail else "The request was refused by the model server.",
        code="model_not_found" if status == 404 else None,
    )


def map_exception(exc: BaseException, ctx: RequestContext) -> OpenAIHTTPError:
    """Turn anything raised while serving into a client-safe error."""
    if isinstance(exc, OpenAIHTTPError):
        return exc
    client_error = _client_http_error(exc)
    if client_error is not None:
        return client_error
    if _is_backpressure(exc):
        return OpenAIHTTPError(503, "The model is overloaded; retry later.", headers={"Retry-After": "1"})
    if is_replica_loss(exc):
        logger.warning("request %s failed: model replica lost (%s)", ctx.request_id, type(exc).__name__)
        return OpenAIHTTPError(
            503,
            "The model replica serving this request stopped before it finished; retry.",
            code="model_unavailable",
            headers={"Retry-After": "1"},
        )
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
        if isinstance(backend, ServeAppBackend):
            return await self._call_app(backend, raw_body, req, ctx)
        if getattr(backend, "task", "generate") != "generate":
            raise OpenAIHTTPError(
                400,
                f"The model '{req.model}' is a {backend.task} model; send its requests to /v1/audio/transcriptions.",
                param="model",
            )
        return await self._local(backend, req, ctx)

    # -- local deployments -------------------------------------------------
    async def _local(self, backend: LocalBackend, req: AnyCompletionRequest, ctx: RequestContext) -> Response:
        is_chat = isinstance(req, ChatCompletionRequest)
        payload: Dict[str, Any] = {
            "request_id": ctx.request_id,
            "kind": "chat" if is_chat else "completion",
            "sampling": req.sampling_options().__dict__,
        }
        if isinstance(req, ChatCompletionRequest):
            payload["messages"] = req.messages_payload()
        else:
            payload["prompt"] = req.prompt_text()
        if not req.stream:
            result = await with_replica_retry(lambda: backend.complete(payload), ctx)
            self._raise_engine_error(result)
            return self._respond(result, req, ctx, is_chat)

        async def open_stream():
            # Nothing is sent before the first delta, so losing the replica
            # up to here can still be retried.
            stream = backend.stream(payload)
            try:
                return stream, await stream.__anext__()
            except StopAsyncIteration:
                return stream, {"text": "", "finish_reason": "stop", "usage": None}

        stream, first = await with_replica_retry(open_stream, ctx)
        self._raise_engine_error(first)
        return StreamingResponse(
            self._sse_stream(first, stream, req, ctx, is_chat),
            media_type="text/event-stream",
            headers={"x-request-id": ctx.request_id, "cache-control": "no-cache"},
        )

    @staticmethod
    def _raise_engine_error(chunk: Dict[str, Any]) -> None:
        error = chunk.get("error")
        if error:
            raise OpenAIHTTPError(
                int(error.get("status", 400)), error.get("message", "bad request"), param=error.get("param")
            )

    def _account(self, ctx: RequestContext, usage: Optional[Dict[str, int]]) -> Optional[UsageInfo]:
        if not usage:
            return None
        ctx.prompt_tokens = usage.get("prompt_tokens")
        ctx.completion_tokens = usage.get("completion_tokens")
        return UsageInfo(**usage)

    def _respond(self, result: Dict[str, Any], req, ctx: RequestContext, is_chat: bool) -> Response:
        """JSON body of a non-streamed request from the deployment's whole answer."""
        # n > 1: "choices" lists every choice; otherwise the result is the only one.
        results = result.get("choices") or [result]
        usage_info = self._account(ctx, result.get("usage")) or UsageInfo()
        created = now()
        body: Union[ChatCompletionResponse, CompletionResponse]
        if is_chat:
            body = ChatCompletionResponse(
                id=new_id("chatcmpl"),
                created=created,
                model=req.model,
                choices=[
                    ChatChoice(
                        index=r.get("index", 0),
                        message=ChatResponseMessage(content=r.get("text") or ""),
                        finish_reason=r.get("finish_reason"),
                        logprobs=chat_logprobs(r.get("logprobs")),
                    )
                    for r in results
                ],
                usage=usage_info,
            )
        else:
            body = CompletionResponse(
                id=new_id("cmpl"),
                created=created,
                model=req.model,
                choices=[
                    CompletionChoice(
                        index=r.get("index", 0),
                        text=r.get("text") or "",
                        finish_reason=r.get("finish_reason"),
                        logprobs=completion_logprobs(r.get("logprobs")),
                    )
                    for r in results
                ],
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

        def chat_chunk(delta: ChatDelta, finish_reason=None, usage=None, choices=True, index=0, logprobs=None) -> str:
            return sse(
                ChatCompletionChunk(
                    id=response_id,
                    created=created,
                    model=req.model,
                    choices=[
                        ChatChunkChoice(
                            index=index, delta=delta, finish_reason=finish_reason, logprobs=chat_logprobs(logprobs)
                        )
                    ]
                    if choices
                    else [],
                    usage=usage,
                ).model_dump(mode="json", exclude_none=not choices)
            )

        # Completions' logprobs.text_offset counts characters per choice.
        text_offsets: Optional[Dict[int, int]] = {} if req.requested_logprobs() is not None else None

        def text_chunk(text: str, finish_reason=None, usage=None, choices=True, index=0, logprobs=None) -> str:
            lp = None
            if text_offsets is not None:
                offset = text_offsets.get(index, 0)
                lp = completion_logprobs(logprobs, offset)
                text_offsets[index] = offset + len(text)
            return sse(
                CompletionResponse(
                    id=response_id,
                    created=created,
                    model=req.model,
                    choices=[CompletionChoice(index=index, text=text, finish_reason=finish_reason, logprobs=lp)]
                    if choices
                    else [],
                    usage=usage,
                ).model_dump(mode="json")
            )

        # Events are written in batches: one body write per engine delta (each
        # write is a message to Serve's proxy). The final delta's events go out
        # together with [DONE], which follows at once; the first write never waits.
        out: List[str] = []
        wrote = False
        try:
            if is_chat:
                for index in range(req.n):
                    out.append(chat_chunk(ChatDelta(role="assistant", content=""), index=index))
            usage_info = None
            chunk = first
            while chunk is not None:
                error = chunk.get("error")
                if error:
                    status, error_type = int(error.get("status", 400)), "invalid_request_error"
                    out.append(sse(OpenAIHTTPError(status, error.get("message", "bad request")).body()))
                    break
                text = chunk.get("text") or ""
                finish_reason = chunk.get("finish_reason")
                index = chunk.get("index", 0)
                logprobs = chunk.get("logprobs")
                if text and ctx.first_token_at is None:
                    ctx.first_token_at = time.monotonic()
                    self.observe_ttft(req.model, ctx.first_token_at - ctx.started)
                if text or finish_reason or logprobs:
                    if is_chat:
                        out.append(
                            chat_chunk(ChatDelta(content=text or None), finish_reason, index=index, logprobs=logprobs)
                        )
                    else:
                        out.append(text_chunk(text, finish_reason, index=index, logprobs=logprobs))
                usage_info = self._account(ctx, chunk.get("usage")) or usage_info
                if out and not (finish_reason and wrote):
                    yield "".join(out)
                    out, wrote = [], True
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    chunk = None
            if status == 200:
                if req.include_usage():
                    usage = usage_info or UsageInfo()
                    out.append(
                        chat_chunk(ChatDelta(), usage=usage, choices=False)
                        if is_chat
                        else text_chunk("", usage=usage, choices=False)
                    )
                out.append(sse("[DONE]"))
            if out:
                yield "".join(out)
                out = []
        except asyncio.CancelledError:
            status, error_type = 499, "client_disconnected"  # nginx's convention
            raise
        except Exception as exc:  # headers are already sent: report in-band
            mapped = map_exception(exc, ctx)
            status, error_type = mapped.status_code, mapped.type
            out.append(sse(mapped.body()))
            yield "".join(out)
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
        client = backend.client
        request = client.build_request("POST", path, content=raw_body, headers=backend.headers())
        response = await call_upstream(backend, req.model, lambda: client.send(request, stream=True))

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

    # -- Serve applications of this cluster (Ray's LLMServer) --------------
    async def _call_app(
        self, backend: ServeAppBackend, raw_body: bytes, req: AnyCompletionRequest, ctx: RequestContext
    ) -> Response:
        is_chat = isinstance(req, ChatCompletionRequest)
        ray_request = ray_llm_request(raw_body, is_chat)
        handle = backend.handle
        if backend.config.lora_adapters and req.model not in backend.config.model_ids:
            # a LoRA adapter of the base model: Serve routes it to a replica that has the adapter
            # loaded (or loads it there), keyed by the full "<base>:<adapter>" name
            handle = handle.options(multiplexed_model_id=req.model)
        method = getattr(handle, "chat" if is_chat else "completions")

        async def open_stream():
            # Nothing is sent before the first item, so losing the replica up to here is retried.
            stream = method.remote(ray_request)
            return stream, await stream.__anext__()

        stream, first = await with_replica_retry(open_stream, ctx)
        head = first[0] if isinstance(first, list) and first else first
        error = getattr(head, "error", None)
        if error is not None and type(head).__name__ == "ErrorResponse":
            raise OpenAIHTTPError(int(getattr(error, "code", 500) or 500), str(getattr(error, "message", "")))
        if not req.stream:
            body = head.model_dump(mode="json") if hasattr(head, "model_dump") else json.loads(str(head))
            usage = body.get("usage") or {}
            ctx.prompt_tokens = usage.get("prompt_tokens")
            ctx.completion_tokens = usage.get("completion_tokens")
            self.finish(ctx, 200)
            return JSONResponse(body, headers={"x-request-id": ctx.request_id})

        async def events() -> AsyncIterator[str]:
            status, done = 200, False
            try:
                item = first
                while True:
                    packet = sse_packet(item)
                    if ctx.first_token_at is None:
                        ctx.first_token_at = time.monotonic()
                        self.observe_ttft(req.model, ctx.first_token_at - ctx.started)
                    done = done or packet.rstrip().endswith("data: [DONE]")
                    yield packet
                    try:
                        item = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                if not done:
                    yield sse("[DONE]")
            except asyncio.CancelledError:
                status = 499
                raise
            except Exception as exc:  # headers are sent: report in-band
                mapped = map_exception(exc, ctx)
                status = mapped.status_code
                yield sse(mapped.body())
            finally:
                self.finish(ctx, status, None if status == 200 else "upstream_error")

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"x-request-id": ctx.request_id, "cache-control": "no-cache"},
        )

    def _passthrough_body(self, status: int, body: bytes, ctx: RequestContext) -> Response:
        if status != 200:
            return upstream_error(status, body, ctx, self.finish)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            usage = parsed.get("usage") or {}
            ctx.prompt_tokens = usage.get("prompt_tokens")
            ctx.completion_tokens = usage.get("completion_tokens")
            self.finish(ctx, 200)
            return Response(
                body, status_code=200, media_type="application/json", headers={"x-request-id": ctx.request_id}
            )
        raise OpenAIHTTPError(502, "The upstream answered HTTP 200.")
