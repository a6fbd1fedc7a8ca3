"""GPU engine on vLLM's AsyncLLM.

The tokenizer's (or processor's, for vision models) own chat template builds
the prompt, so no prompt format is hand-written here. OpenAI sampling fields
map one-to-one onto vLLM SamplingParams; vLLM streams DELTA outputs.
"""

from __future__ import annotations

import base64
import inspect
import io
import logging
from typing import Any, AsyncIterator, Dict, List, Optional

from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    Usage,
)

logger = logging.getLogger("rayllm.engine.vllm")

_IMAGE_PART_TYPES = ("image_url", "input_image")


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def to_vllm_sampling_params(sampling: SamplingOptions, default_max_tokens: Optional[int] = None):
    """Map engine-neutral sampling options onto ``vllm.SamplingParams``."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kwargs: Dict[str, Any] = dict(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        stop_token_ids=list(sampling.stop_token_ids) or None,
        ignore_eos=sampling.ignore_eos,
        min_tokens=sampling.min_tokens,
        max_tokens=sampling.max_tokens if sampling.max_tokens is not None else default_max_tokens,
        output_kind=RequestOutputKind.DELTA,
    )
    if sampling.top_k is not None:
        kwargs["top_k"] = sampling.top_k
    if sampling.min_p is not None:
        kwargs["min_p"] = sampling.min_p
    if sampling.repetition_penalty is not None:
        kwargs["repetition_penalty"] = sampling.repetition_penalty
    if sampling.logit_bias:
        kwargs["logit_bias"] = dict(sampling.logit_bias)
    return SamplingParams(**kwargs)


def _load_image(url: str):
    """Decode a data: URL or read a local file:// URL into a PIL image.

    Remote http(s) URLs are fetched with httpx; pods often have no egress, in
    which case the client should send data: URLs.
    """
    from PIL import Image

    if url.startswith("data:"):
        try:
            payload = url.split(",", 1)[1]
            return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
        except Exception as exc:  # bad base64 / not an image
            raise EngineInputError(
                "got an image_url data URL that is not a base64 image; expected data:image/...;base64,...; "
                "re-encode the image",
                param="messages",
            ) from exc
    if url.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(url, timeout=20.0, follow_redirects=True)
            response.raise_for_status()
            return Image.open(io.BytesIO(response.content)).convert("RGB")
        except Exception as exc:
            raise EngineInputError(
                f"got an image_url that could not be fetched ({type(exc).__name__}); expected a reachable image; "
                "send the image as a data: URL",
                param="messages",
            ) from exc
    raise EngineInputError(
        "got an image_url with an unsupported scheme; expected data: or http(s); send a data: URL",
        param="messages",
    )


class VllmEngine(Engine):
    supports_images = True

    def __init__(self, model_id: str, source: str, options: Dict[str, Any]):
        self.model_id = model_id
        self.source = source
        self.options = dict(options)
        self.default_max_tokens = self.options.pop("default_max_tokens", None)
        self.engine = None
        self.tokenizer = None
        self._processor = None

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(model=self.source, served_model_name=[self.model_id], **self.options)
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = await _maybe_await(self.engine.get_tokenizer())
        logger.info("vLLM engine ready for %s from %s", self.model_id, self.source)

    def _processor_for_images(self):
        # Vision models keep their image-aware chat template on the processor.
        if self._processor is None:
            from transformers import AutoProcessor

            self._processor = AutoProcessor.from_pretrained(
                self.source, trust_remote_code=bool(self.options.get("trust_remote_code"))
            )
        return self._processor

    def _build_prompt(self, prompt_or_messages: PromptOrMessages):
        if isinstance(prompt_or_messages, str):
            return prompt_or_messages
        images: List[Any] = []
        messages: List[Dict[str, Any]] = []
        for message in prompt_or_messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    kind = part.get("type")
                    if kind == "text":
                        parts.append({"type": "text", "text": part.get("text", "")})
                    elif kind in _IMAGE_PART_TYPES:
                        ref = part.get("image_url")
                        url = ref.get("url") if isinstance(ref, dict) else ref
                        images.append(_load_image(str(url or "")))
                        parts.append({"type": "image"})
                    else:
                        raise EngineInputError(
                            f"got a content part of type {kind!r}; expected text or image_url; remove that part",
                            param="messages",
                        )
                if images:
                    messages.append({**message, "content": parts})
                else:
                    messages.append({**message, "content": "".join(p["text"] for p in parts)})
            else:
                messages.append({**message, "content": content or ""})
        if images:
            processor = self._processor_for_images()
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return {"prompt": text, "multi_modal_data": {"image": images if len(images) > 1 else images[0]}}
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineInputError(
                f"got a chat request for model {self.model_id!r}, which has no chat template; "
                "expected a chat model; use /v1/completions"
            )
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        if sampling.n != 1:
            raise EngineInputError(
                f"got n={sampling.n}; expected n=1 for streaming through rayllm_runtime; send several requests",
                param="n",
            )
        prompt = self._build_prompt(prompt_or_messages)
        params = to_vllm_sampling_params(sampling, self.default_max_tokens)
        prompt_tokens = 0
        completion_tokens = 0
        finish: Optional[str] = None
        try:
            async for output in self.engine.generate(prompt, params, request_id):
                if output.prompt_token_ids is not None:
                    prompt_tokens = len(output.prompt_token_ids)
                for completion in output.outputs[:1]:
                    completion_tokens += len(completion.token_ids)
                    if completion.finish_reason:
                        finish = completion.finish_reason
                    if completion.text:
                        yield GenerationChunk(text=completion.text)
        except ValueError as exc:
            # vLLM raises ValueError for inputs it rejects (e.g. too long).
            raise EngineInputError(f"got a request the engine rejected: {exc}") from exc
        finally:
            # Client went away before the end: free the KV cache now.
            if finish is None and self.engine is not None:
                try:
                    await _maybe_await(self.engine.abort(request_id))
                except Exception:
                    logger.debug("abort of %s failed", request_id, exc_info=True)
        yield GenerationChunk(
            finish_reason=finish or "stop",
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        )

    async def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("vLLM engine not started")
        await _maybe_await(self.engine.check_health())

    async def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
