"""POST /v1/audio/transcriptions: multipart upload -> a model's transcript.

The gateway has already applied auth, the rate limit and the body size
limit (the whole multipart body counts). Here the form is parsed (with
python-multipart, through Starlette's parser), the audio decoded to 16 kHz
mono (``rayllm_runtime.audio``; a 400 when it is not decodable) and sent to
the model's deployment, or the untouched body is forwarded to an upstream
app. The audio and the transcript never reach the audit log; the request's
``prompt`` field does when prompt logging is on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict

from pydantic import ValidationError
from starlette.responses import JSONResponse, PlainTextResponse, Response

from rayllm_runtime.model_routing import LocalBackend, ModelRouter, ServeAppBackend, UpstreamBackend
from rayllm_runtime.openai.errors import OpenAIHTTPError, describe_validation_error
from rayllm_runtime.openai.protocol import (
    TranscriptionRequest,
    TranscriptionResponse,
    TranscriptionUsage,
    TranscriptionVerboseResponse,
)
from rayllm_runtime.openai.serving import call_upstream, upstream_error, with_replica_retry

logger = logging.getLogger("rayllm.transcription")

PATH = "/v1/audio/transcriptions"
_MAX_FIELDS = 32


@dataclass
class TranscriptionForm:
    request: TranscriptionRequest
    audio: bytes
    content_type: str


async def parse_form(content_type: str, body: bytes, on_model=None) -> TranscriptionForm:
    """Parse and validate the multipart body (400 on anything malformed).

    ``on_model`` is called with the raw ``model`` field before validation, so
    the audit log and metrics name the model even when the request is bad.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise OpenAIHTTPError(
            400,
            "Expected a multipart/form-data body with 'file' and 'model' fields; send the audio as a form upload.",
        )
    try:
        from starlette.datastructures import Headers
        from starlette.formparsers import MultiPartException, MultiPartParser
    except ImportError:  # pragma: no cover - starlette always ships both
        raise OpenAIHTTPError(500, "The server cannot parse form uploads; contact the operator.") from None
    try:
        import python_multipart  # noqa: F401  (Starlette's form parser needs it)
    except ImportError:
        try:
            import multipart  # noqa: F401  (its older module name)
        except ImportError:
            logger.error("python-multipart is not installed; /v1/audio/transcriptions cannot parse uploads")
            raise OpenAIHTTPError(
                500, "The server cannot parse form uploads (python-multipart missing); contact the operator."
            ) from None

    async def single_chunk():
        yield body

    parser = MultiPartParser(
        Headers({"content-type": content_type}), single_chunk(), max_files=1, max_fields=_MAX_FIELDS
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise OpenAIHTTPError(400, f"The multipart body is invalid: {exc.message}. Send a valid form upload.") from None
    except Exception:
        raise OpenAIHTTPError(400, "The multipart body is invalid; send a valid form upload.") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise OpenAIHTTPError(400, "Missing the 'file' field; send the audio file as 'file'.", param="file")
        audio = await upload.read()
        fields: Dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == "file" or not isinstance(value, str):
                continue
            name = key[:-2] if key.endswith("[]") else key
            if name in ("timestamp_granularities", "include"):
                fields.setdefault(name, []).append(value)
            elif value != "":
                fields[name] = value
    finally:
        await form.close()
    if on_model is not None and isinstance(fields.get("model"), str):
        on_model(fields["model"])
    try:
        request = TranscriptionRequest.model_validate(fields)
    except ValidationError as exc:
        raise describe_validation_error(exc) from None
    return TranscriptionForm(request=request, audio=audio, content_type=content_type)


class TranscriptionServing:
    def __init__(self, router: ModelRouter, finish):
        self.router = router
        self.finish = finish

    async def create(self, form: TranscriptionForm, raw_body: bytes, ctx) -> Response:
        req = form.request
        backend = self.router.resolve(req.model)
        if backend is None:
            raise OpenAIHTTPError(
                404,
                f"The model '{req.model}' does not exist; GET /v1/models lists the served models.",
                param="model",
                code="model_not_found",
            )
        if isinstance(backend, UpstreamBackend):
            return await self._forward(backend, raw_body, form.content_type, ctx)
        # A Serve app (Ray's LLM server) has no task: it serves text generation only.
        if isinstance(backend, ServeAppBackend) or getattr(backend, "task", "generate") != "transcription":
            raise OpenAIHTTPError(
                400,
                f"The model '{req.model}' does not support audio transcription; "
                "send the audio to a model with task: transcription.",
                param="model",
            )
        return await self._local(backend, form, ctx)

    async def _local(self, backend: LocalBackend, form: TranscriptionForm, ctx) -> Response:
        from rayllm_runtime.audio import AudioDecodeError, decode_audio

        req = form.request
        try:
            # CPU-bound (parsing, resampling): off the event loop.
            audio = await asyncio.get_running_loop().run_in_executor(None, decode_audio, form.audio)
        except AudioDecodeError as exc:
            raise OpenAIHTTPError(400, f"Could not decode the audio file: {exc}.", param="file") from None
        payload = {
            "request_id": ctx.request_id,
            "audio": audio.tobytes(),
            "options": {"language": req.language, "prompt": req.prompt, "temperature": req.temperature},
        }
        # Nothing reached the client yet: a lost replica can be retried like a chat request.
        result = await with_replica_retry(lambda: backend.transcribe(payload), ctx)
        error = result.get("error")
        if error:
            raise OpenAIHTTPError(
                int(error.get("status", 400)), error.get("message", "bad request"), param=error.get("param")
            )
        usage = result.get("usage") or {}
        ctx.prompt_tokens = usage.get("prompt_tokens")
        ctx.completion_tokens = usage.get("completion_tokens")
        text = result.get("text") or ""
        duration = float(result.get("duration_s") or 0.0)
        billed = TranscriptionUsage(seconds=int(math.ceil(duration)))
        headers = {"x-request-id": ctx.request_id}
        if req.response_format == "text":
            response: Response = PlainTextResponse(text, headers=headers)
        elif req.response_format == "verbose_json":
            body = TranscriptionVerboseResponse(
                language=result.get("language"), duration=round(duration, 3), text=text, usage=billed
            )
            response = JSONResponse(body.model_dump(mode="json"), headers=headers)
        else:
            response = JSONResponse(
                TranscriptionResponse(text=text, usage=billed).model_dump(mode="json"), headers=headers
            )
        self.finish(ctx, 200)
        return response

    async def _forward(self, backend: UpstreamBackend, raw_body: bytes, content_type: str, ctx) -> Response:
        """The body as received (multipart, boundary included) to the upstream app."""
        response = await call_upstream(
            backend,
            ctx.model,
            lambda: backend.client.post(PATH, content=raw_body, headers=backend.headers(content_type)),
        )
        if response.status_code != 200:
            return upstream_error(response.status_code, response.content, ctx, self.finish)
        self.finish(ctx, 200)
        media_type = response.headers.get("content-type", "application/json")
        return Response(
            response.content, status_code=200, media_type=media_type, headers={"x-request-id": ctx.request_id}
        )
