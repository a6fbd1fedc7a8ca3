"""A model-free engine: a fixed answer after a configurable delay.

Used for benchmarks of the serving stack itself and for fault injection.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator, Dict

from rayllm_runtime.config import FakeEngineOptions
from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    StopSequenceFilter,
    TranscriptionOptions,
    TranscriptionResult,
    Usage,
    reject_generation_on_transcription_model,
    text_of_content,
)


class FakeEngineFailure(RuntimeError):
    """Raised on purpose when ``fail: true`` (fault tests)."""


def _count_words(text: str) -> int:
    return len(text.split())


class FakeEngine(Engine):
    """n > 1 repeats the answer per choice; with task: transcription,
    ``transcribe`` returns the fixed response as the transcript."""

    def __init__(self, model_id: str, options: Dict[str, Any], task: str = "generate"):
        self.model_id = model_id
        self.options = FakeEngineOptions.model_validate(options)
        self.task = task
        self.supports_transcription = task == "transcription"

    async def start(self) -> None:
        return None

    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        opts = self.options
        reject_generation_on_transcription_model(self.model_id, self.task)
        if sampling.logprobs is not None:
            raise EngineInputError(
                "got logprobs; expected no logprobs for the fake engine, which has no token probabilities; "
                "drop logprobs/top_logprobs",
                param="logprobs",
            )
        if isinstance(prompt_or_messages, str):
            prompt_text = prompt_or_messages
        else:
            prompt_text = "\n".join(text_of_content(m.get("content")) for m in prompt_or_messages)
        if opts.first_token_delay_s:
            await asyncio.sleep(opts.first_token_delay_s)
        if opts.fail:
            raise FakeEngineFailure("fake engine configured to fail (fail: true)")

        # One delta per word (keeping the whitespace) mimics token streaming.
        pieces = re.findall(r"\S+\s*", opts.response) or [opts.response]
        limit = sampling.max_tokens if sampling.max_tokens is not None else len(pieces)
        produced = 0
        for choice in range(sampling.n):
            stopper = StopSequenceFilter(sampling.stop)
            finish = "stop"
            for index, piece in enumerate(pieces):
                if index >= limit:
                    finish = "length"
                    break
                if index and opts.token_delay_s:
                    await asyncio.sleep(opts.token_delay_s)
                produced += 1
                text = stopper.feed(piece)
                if text:
                    yield GenerationChunk(text=text, index=choice)
                if stopper.stopped:
                    break
            tail = "" if stopper.stopped else stopper.flush()
            last = choice == sampling.n - 1
            yield GenerationChunk(
                text=tail,
                finish_reason=finish,
                index=choice,
                usage=Usage(prompt_tokens=_count_words(prompt_text), completion_tokens=produced) if last else None,
            )

    async def transcribe(self, audio, options: TranscriptionOptions, request_id: str) -> TranscriptionResult:
        if not self.supports_transcription:
            return await super().transcribe(audio, options, request_id)
        if self.options.first_token_delay_s:
            await asyncio.sleep(self.options.first_token_delay_s)
        if self.options.fail:
            raise FakeEngineFailure("fake engine configured to fail (fail: true)")
        return TranscriptionResult(
            text=self.options.response,
            language=options.language or "en",
            duration_s=len(audio) / 16000.0,
            usage=Usage(prompt_tokens=0, completion_tokens=_count_words(self.options.response)),
        )
