"""The gateway's request handling: guards (auth, rate limit, size), audit, metrics, routing.

Plain Python, unit-testable without Ray. Layers (each imports only the ones above it):
openai.errors / openai.protocol -> model_routing -> openai.serving / openai.transcription
(one per endpoint) -> gateway_core (this) -> openai.http_routes (the FastAPI surface) ->
gateway (the Serve deployment, which holds one GatewayCore per replica) -> apps (builders).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Awaitable, Callable, Dict, Optional, cast

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rayllm_runtime.audit import AuditLog
from rayllm_runtime.config import GatewayArgs
from rayllm_runtime.metrics import get_metrics
from rayllm_runtime.model_routing import ModelRouter
from rayllm_runtime.openai.errors import OpenAIHTTPError, describe_validation_error
from rayllm_runtime.openai.protocol import ModelCard, ModelList, random_hex
from rayllm_runtime.openai.serving import AnyCompletionRequest, OpenAIServing, RequestContext, map_exception
from rayllm_runtime.openai.transcription import TranscriptionServing
from rayllm_runtime.openai.transcription import parse_form as parse_transcription_form
from rayllm_runtime.security import ApiKeyStore, TokenBucketLimiter, bearer_token

logger = logging.getLogger("rayllm.gateway")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class GatewayCore:
    def __init__(self, args: GatewayArgs, handles: Dict[str, Any]):
        self.args = args
        self.router = ModelRouter(args, handles)
        self.keys = (
            # cast: AuthConfig refuses enabled without api_keys_path, so the path is set here.
            ApiKeyStore(cast(str, args.auth.api_keys_path), args.auth.reload_interval_s) if args.auth.enabled else None
        )
        self.limiter = (
            TokenBucketLimiter(args.rate_limit.requests_per_minute, args.rate_limit.burst)
            if args.rate_limit.enabled
            else None
        )
        self.metrics = get_metrics()
        self.audit = AuditLog(args.audit_log.enabled, args.audit_log.include_prompts)
        self.serving = OpenAIServing(self.router, self.finish, self._observe_ttft)
        self.transcription = TranscriptionServing(self.router, self.finish)
        self.created = int(time.time())

    # -- per request -------------------------------------------------------
    def new_context(self, request: Request, endpoint: str) -> RequestContext:
        offered = request.headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID_RE.match(offered) else random_hex()
        return RequestContext(request_id=request_id, endpoint=endpoint)

    def authenticate(self, request: Request, ctx: RequestContext) -> None:
        if self.keys is None:
            return
        kid = self.keys.verify(bearer_token(request.headers.get("authorization")))
        if kid is None:
            raise OpenAIHTTPError(
                401,
                "Missing or invalid API key; send 'Authorization: Bearer <key>' with a valid key.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        ctx.key_id = kid

    def throttle(self, request: Request, ctx: RequestContext) -> None:
        if self.limiter is None:
            return
        client = request.client.host if request.client else "unknown"
        bucket = ctx.key_id or f"ip:{client}"
        allowed, wait_s = self.limiter.acquire(bucket)
        if not allowed:
            retry_after = self.limiter.retry_after_header(wait_s)
            raise OpenAIHTTPError(
                429,
                f"Rate limit of {self.args.rate_limit.requests_per_minute:g} requests per minute reached; "
                f"retry after {retry_after} s.",
                headers={"Retry-After": retry_after},
            )

    async def read_body(self, request: Request) -> bytes:
        limit = self.args.max_request_bytes
        too_large = OpenAIHTTPError(
            413, f"Request body larger than {limit} bytes; send a smaller request.", code="request_too_large"
        )
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise too_large
            except ValueError:
                raise OpenAIHTTPError(400, "Invalid Content-Length header; send a valid request.") from None
        # Also count the real bytes: Content-Length may be absent (chunked) or lie.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def parse_json(body: bytes) -> Dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise OpenAIHTTPError(400, "The request body is not valid JSON; send a JSON object.") from None
        except RecursionError:  # a few KB of brackets: the client's fault, not a 500
            raise OpenAIHTTPError(400, "The request body is nested too deeply; send a flatter JSON object.") from None
        if not isinstance(data, dict):
            raise OpenAIHTTPError(400, 'The request body must be a JSON object; send {"model": ..., ...}.')
        return data

    def finish(self, ctx: RequestContext, status: int, error_type: Optional[str] = None) -> None:
        """Record metrics and the audit line exactly once per request."""
        if ctx.finished:
            return
        ctx.finished = True
        latency = time.monotonic() - ctx.started
        model = ctx.model or "unknown"
        # Unknown models would create unbounded label values; bucket them.
        if model not in self.router.model_ids():
            model = "unknown"
        try:
            m = self.metrics
            if ctx.in_flight_model:
                m.in_flight.labels(model=ctx.in_flight_model).dec()
            m.requests.labels(model=model, endpoint=ctx.endpoint, status=str(status)).inc()
            m.latency.labels(model=model, endpoint=ctx.endpoint).observe(latency)
            if ctx.prompt_tokens:
                m.tokens.labels(model=model, kind="prompt").inc(ctx.prompt_tokens)
            if ctx.completion_tokens:
                m.tokens.labels(model=model, kind="completion").inc(ctx.completion_tokens)
            if status >= 400:
                m.errors.labels(model=model, type=error_type or str(status)).inc()
            self.audit.record(
                request_id=ctx.request_id,
                key_id=ctx.key_id,
                endpoint=ctx.endpoint,
                model=ctx.model,
                status=status,
                latency_s=latency,
                prompt_tokens=ctx.prompt_tokens,
                completion_tokens=ctx.completion_tokens,
                prompt=ctx.prompt,
                error_type=error_type,
            )
        except Exception:  # observability must never fail a request
            logger.warning("recording request %s failed", ctx.request_id, exc_info=True)

    def _observe_ttft(self, model: str, seconds: float) -> None:
        self.metrics.ttft.labels(model=model).observe(seconds)

    async def guarded(
        self,
        request: Request,
        endpoint: str,
        handler: Callable[[RequestContext], Awaitable[Response]],
        *,
        needs_auth: bool = True,
    ) -> Response:
        """Run a handler with auth, rate limit and error mapping.

        Every failure becomes an OpenAI-shaped error; nothing (tracebacks
        included) reaches the client beyond the message we chose.
        """
        ctx = self.new_context(request, endpoint)
        try:
            if needs_auth:
                self.authenticate(request, ctx)
                self.throttle(request, ctx)
            response = await handler(ctx)
            response.headers.setdefault("x-request-id", ctx.request_id)
            # Streaming responses record themselves when the stream ends.
            if not ctx.finished and not isinstance(response, StreamingResponse):
                self.finish(ctx, response.status_code)
            return response
        except Exception as exc:
            error = map_exception(exc, ctx)
            self.finish(ctx, error.status_code, error.type if error.status_code >= 500 else error.code)
            return error.to_response(ctx.request_id)

    async def completions(
        self, request: Request, ctx: RequestContext, model_cls: type[AnyCompletionRequest]
    ) -> Response:
        body = await self.read_body(request)
        data = self.parse_json(body)
        if isinstance(data.get("model"), str):
            ctx.model = data["model"]
        try:
            parsed = model_cls.model_validate(data)
        except ValidationError as exc:
            raise describe_validation_error(exc) from None
        if self.audit.include_prompts:
            ctx.prompt = parsed.prompt_text()
        if self.router.resolve(parsed.model) is not None:
            ctx.in_flight_model = parsed.model
            self.metrics.in_flight.labels(model=parsed.model).inc()
        return await self.serving.create(parsed, body, ctx)

    async def transcriptions(self, request: Request, ctx: RequestContext) -> Response:
        """POST /v1/audio/transcriptions (multipart); the audio is never logged."""
        body = await self.read_body(request)

        def on_model(model: str) -> None:
            ctx.model = model

        form = await parse_transcription_form(request.headers.get("content-type", ""), body, on_model)
        if self.audit.include_prompts:
            ctx.prompt = form.request.prompt
        if self.router.resolve(form.request.model) is not None:
            ctx.in_flight_model = form.request.model
            self.metrics.in_flight.labels(model=form.request.model).inc()
        return await self.transcription.create(form, body, ctx)

    def list_models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m, created=self.created) for m in self.router.model_ids()])

    async def close(self) -> None:
        await self.router.close()
