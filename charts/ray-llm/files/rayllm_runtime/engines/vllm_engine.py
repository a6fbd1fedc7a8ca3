"""GPU engine on vLLM's AsyncLLM.

The tokenizer's (or processor's, for vision models) own chat template builds
the prompt, so no prompt format is hand-written here. OpenAI sampling fields
(n and logprobs included) map one-to-one onto vLLM SamplingParams; vLLM
streams DELTA outputs. With ``task: transcription`` the engine serves a
Whisper-style encoder-decoder model: the audio goes to the encoder as
``multi_modal_data={"audio": (waveform, sample_rate)}`` and the decoder gets
Whisper's task prompt, the request shape vLLM's own transcription server
builds for Whisper.
"""

from __future__ import annotations

import base64
import inspect
import io
import logging
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

from rayllm_runtime.engines import speech
from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    TokenLogprob,
    TranscriptionOptions,
    TranscriptionResult,
    Usage,
    reject_generation_on_transcription_model,
    token_logprob,
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
    if sampling.logprobs is not None:
        kwargs["logprobs"] = sampling.logprobs  # vLLM: the sampled token's plus the top k
    return SamplingParams(**kwargs)


def to_openai_logprobs(
    token_ids: Sequence[int], logprobs: Any, top_k: int, token_text: Callable[[int], str]
) -> List[TokenLogprob]:
    """vLLM's per-position {token_id: Logprob} dicts -> OpenAI entries.

    vLLM returns the top k of each position plus the sampled token (which
    may rank lower); ``top_logprobs`` keeps the k best by rank.
    """
    out: List[TokenLogprob] = []
    if logprobs is None:
        return out
    for position, token_id in enumerate(token_ids):
        if position >= len(logprobs):
            break
        entry = logprobs[position] or {}

        def text_of(tid: int, info: Any) -> str:
            decoded = getattr(info, "decoded_token", None)
            return decoded if decoded is not None else token_text(tid)

        chosen = entry.get(token_id)
        ranked = sorted(
            ((tid, info) for tid, info in entry.items() if getattr(info, "rank", None) is not None),
            key=lambda item: item[1].rank,
        )
        top: List[Tuple[str, float]] = [(text_of(tid, info), info.logprob) for tid, info in ranked[:top_k]]
        out.append(
            token_logprob(
                text_of(token_id, chosen),
                chosen.logprob if chosen is not None else float("-inf"),
                top if top_k > 0 else (),
            )
        )
    return out


def whisper_prompt(
    audio: Any, sample_rate: int, language: str, prompt: Optional[str] = None, task: str = "transcribe"
) -> Dict[str, Any]:
    """vLLM's explicit encoder/decoder prompt for one Whisper audio window."""
    return {
        "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, sample_rate)}},
        "decoder_prompt": {"prompt": speech.decoder_prompt_text(language, prompt, task)},
    }


def whisper_language_detection(audio: Any, sample_rate: int, language_ids: Sequence[int]):
    """(prompt, SamplingParams) that make Whisper emit one language token."""
    from vllm import SamplingParams

    prompt = {
        "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, sample_rate)}},
        "decoder_prompt": {"prompt": speech.START_OF_TRANSCRIPT},
    }
    return prompt, SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=list(language_ids))


def to_vllm_transcription_params(options: TranscriptionOptions, max_tokens: int):
    """SamplingParams of one transcription window (the whole text at the end)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        temperature=options.temperature,
        max_tokens=max_tokens,
        output_kind=RequestOutputKind.FINAL_ONLY,
        skip_special_tokens=True,
    )


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

    def __init__(self, model_id: str, source: str, options: Dict[str, Any], task: str = "generate"):
        self.model_id = model_id
        self.source = source
        self.options = dict(options)
        self.default_max_tokens = self.options.pop("default_max_tokens", None)
        self.task = task
        self.supports_transcription = task == "transcription"
        # vLLM's AsyncLLM and its tokenizer, made by start(); vLLM is imported lazily and its
        # engine API moves between releases, so they are typed loosely.
        self.engine: Any = None
        self.tokenizer: Any = None
        self._processor: Any = None
        self._token_texts: Dict[int, str] = {}
        # Speech-to-text: the model's languages, rate and window (Whisper's defaults).
        self.languages: Dict[str, int] = {}
        self.speech_rate = 16000
        self.speech_window_s: Optional[float] = 30.0

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(model=self.source, served_model_name=[self.model_id], **self.options)
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = await _maybe_await(self.engine.get_tokenizer())
        if self.supports_transcription:
            self._init_speech()
        logger.info("vLLM engine ready for %s from %s", self.model_id, self.source)

    def _init_speech(self) -> None:
        self.languages = speech.language_tokens(self.tokenizer.get_vocab())
        try:
            from transformers import AutoFeatureExtractor

            extractor = AutoFeatureExtractor.from_pretrained(
                self.source, trust_remote_code=bool(self.options.get("trust_remote_code"))
            )
            self.speech_rate = int(getattr(extractor, "sampling_rate", self.speech_rate))
            self.speech_window_s = getattr(extractor, "chunk_length", self.speech_window_s)
        except Exception:
            logger.warning("no feature extractor config for %s; assuming 16 kHz and 30 s windows", self.model_id)

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

    def _token_text(self, token_id: int) -> str:
        text = self._token_texts.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id])
            if len(self._token_texts) < 200_000:
                self._token_texts[token_id] = text
        return text

    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        reject_generation_on_transcription_model(self.model_id, self.task)
        prompt = self._build_prompt(prompt_or_messages)
        params = to_vllm_sampling_params(sampling, self.default_max_tokens)
        n = max(1, sampling.n)
        prompt_tokens = 0
        completion_tokens = 0
        finishes: List[Optional[str]] = [None] * n
        try:
            async for output in self.engine.generate(prompt, params, request_id):
                if output.prompt_token_ids is not None:
                    prompt_tokens = len(output.prompt_token_ids)
                for completion in output.outputs:
                    index = int(getattr(completion, "index", 0) or 0)
                    if index >= n:
                        continue
                    completion_tokens += len(completion.token_ids)
                    if completion.finish_reason:
                        finishes[index] = completion.finish_reason
                    logprobs = None
                    if sampling.logprobs is not None:
                        logprobs = to_openai_logprobs(
                            completion.token_ids, completion.logprobs, sampling.logprobs, self._token_text
                        )
                    if completion.text or logprobs:
                        yield GenerationChunk(text=completion.text, index=index, logprobs=logprobs)
        except ValueError as exc:
            # vLLM raises ValueError for inputs it rejects (e.g. too long).
            raise EngineInputError(f"got a request the engine rejected: {exc}") from exc
        finally:
            # Client went away before the end: free the KV cache now.
            if any(f is None for f in finishes) and self.engine is not None:
                await self._abort(request_id)
        for index, finish in enumerate(finishes):
            yield GenerationChunk(
                finish_reason=finish or "stop",
                index=index,
                usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
                if index == n - 1
                else None,
            )

    async def _abort(self, request_id: str) -> None:
        try:
            await _maybe_await(self.engine.abort(request_id))
        except Exception:
            logger.debug("abort of %s failed", request_id, exc_info=True)

    # -- speech to text (task: transcription) -------------------------------
    async def _final_output(self, prompt: Any, params: Any, request_id: str):
        final = None
        done = False
        try:
            async for output in self.engine.generate(prompt, params, request_id):
                final = output
            done = True
        except ValueError as exc:
            raise EngineInputError(f"got audio the engine rejected: {exc}") from exc
        finally:
            if not done and self.engine is not None:
                await self._abort(request_id)
        if final is None or not final.outputs:
            raise RuntimeError(f"vLLM returned no output for {request_id}")
        return final

    def _max_speech_tokens(self, decoder_prompt: str) -> int:
        model_config = getattr(self.engine, "model_config", None)
        limit = getattr(model_config, "max_model_len", None) or 448
        used = len(self.tokenizer.encode(decoder_prompt, add_special_tokens=False))
        if used >= limit:
            raise EngineInputError(
                f"got a prompt of {used} tokens; expected fewer than the model's {limit}; shorten prompt",
                param="prompt",
            )
        return limit - used

    async def transcribe(self, audio, options: TranscriptionOptions, request_id: str) -> TranscriptionResult:
        if not self.supports_transcription:
            return await super().transcribe(audio, options, request_id)
        if self.engine is None:
            raise RuntimeError("vLLM engine not started")
        language = speech.check_language(options.language, self.languages)
        duration = audio.shape[0] / 16000.0
        if self.speech_rate != 16000:
            from rayllm_runtime.audio import resample

            audio = resample(audio, 16000, self.speech_rate)
        windows = speech.split_windows(audio, self.speech_rate, self.speech_window_s)
        if language is None:
            if not self.languages:
                raise EngineInputError(
                    f"got no language; expected one for model {self.model_id!r}; set language", param="language"
                )
            by_id = {token_id: code for code, token_id in self.languages.items()}
            prompt, params = whisper_language_detection(windows[0], self.speech_rate, list(by_id))
            detected = await self._final_output(prompt, params, f"{request_id}-lang")
            token_ids = list(detected.outputs[0].token_ids)
            language = by_id.get(token_ids[0]) if token_ids else None
            if language is None:
                raise RuntimeError(f"language detection of {request_id} returned no language token")
        texts: List[str] = []
        usage = Usage()
        for number, window in enumerate(windows):
            prompt = whisper_prompt(window, self.speech_rate, language, options.prompt)
            params = to_vllm_transcription_params(options, self._max_speech_tokens(prompt["decoder_prompt"]["prompt"]))
            output = await self._final_output(prompt, params, f"{request_id}-{number}")
            completion = output.outputs[0]
            texts.append(completion.text)
            usage.prompt_tokens += len(output.prompt_token_ids or [])
            usage.completion_tokens += len(completion.token_ids)
        return TranscriptionResult(text=speech.join_windows(texts), language=language, duration_s=duration, usage=usage)

    async def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("vLLM engine not started")
        await _maybe_await(self.engine.check_health())

    async def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
