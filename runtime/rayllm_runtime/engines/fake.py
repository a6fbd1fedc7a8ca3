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
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    StopSequenceFilter,
    Usage,
    text_of_content,
)


class FakeEngineFailure(RuntimeError):
    """Raised on purpose when ``fail: true`` (fault tests)."""


def _count_words(text: str) -> int:
    return len(text.split())


class FakeEngine(Engine):
    def __init__(self, model_id: str, options: Dict[str, Any]):
        self.model_id = model_id
        self.options = FakeEngineOptions.model_validate(options)

    async def start(self) -> None:
        return None

    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        opts = self.options
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
        stopper = StopSequenceFilter(sampling.stop)
        finish = "stop"
        produced = 0
        for index, piece in enumerate(pieces):
            if produced >= limit:
                finish = "length"
                break
            if index and opts.token_delay_s:
                await asyncio.sleep(opts.token_delay_s)
            produced += 1
            text = stopper.feed(piece)
            if text:
                yield GenerationChunk(text=text)
            if stopper.stopped:
                break
        tail = "" if stopper.stopped else stopper.flush()
        yield GenerationChunk(
            text=tail,
            finish_reason=finish,
            usage=Usage(prompt_tokens=_count_words(prompt_text), completion_tokens=produced),
        )
