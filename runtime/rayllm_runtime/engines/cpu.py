"""CPU engine on Hugging Face transformers.

A hand-written decode loop (instead of ``model.generate``) gives exact token
counts, our own stop handling, and cancellation when the client goes away.
It runs in worker threads so the replica's event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set

from rayllm_runtime.config import CpuEngineOptions
from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    StopSequenceFilter,
    Usage,
    text_of_content,
)

logger = logging.getLogger("rayllm.engine.cpu")

_DONE = object()


class CpuEngine(Engine):
    def __init__(self, model_id: str, source: str, options: Dict[str, Any]):
        self.model_id = model_id
        self.source = source
        self.options = CpuEngineOptions.model_validate(options)
        self._executor = ThreadPoolExecutor(
            max_workers=self.options.max_concurrency, thread_name_prefix="rayllm-cpu"
        )
        self._slots = asyncio.Semaphore(self.options.max_concurrency)
        self.model = None
        self.tokenizer = None
        self.eos_ids: Set[int] = set()
        self.context_len: Optional[int] = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        dtype = "auto" if self.options.dtype == "auto" else getattr(torch, self.options.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.source, trust_remote_code=self.options.trust_remote_code
        )
        import transformers

        # transformers renamed torch_dtype to dtype in 4.56.
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        dtype_arg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        self.model = AutoModelForCausalLM.from_pretrained(
            self.source, trust_remote_code=self.options.trust_remote_code, **{dtype_arg: dtype}
        )
        self.model.eval()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            self.eos_ids.add(eos)
        elif eos:
            self.eos_ids.update(int(e) for e in eos)
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(self.tokenizer.eos_token_id))
        self.context_len = getattr(self.model.config, "max_position_embeddings", None)
        logger.info("loaded %s from %s (context %s)", self.model_id, self.source, self.context_len)

    # -- prompt ------------------------------------------------------------
    def _prompt_ids(self, prompt_or_messages: PromptOrMessages) -> List[int]:
        tok = self.tokenizer
        if isinstance(prompt_or_messages, str):
            return list(tok(prompt_or_messages, add_special_tokens=True)["input_ids"])
        if not getattr(tok, "chat_template", None):
            raise EngineInputError(
                f"got a chat request for model {self.model_id!r}, which has no chat template; "
                "expected a chat model; use /v1/completions for this model"
            )
        messages = [
            {**m, "content": text_of_content(m.get("content"))} for m in prompt_or_messages
        ]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already places BOS and friends; don't add them twice.
        return list(tok(text, add_special_tokens=False)["input_ids"])

    # -- generation --------------------------------------------------------
    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        if self.model is None:
            raise RuntimeError("engine not started")
        if sampling.n != 1:
            raise EngineInputError(
                f"got n={sampling.n}; expected n=1 on the cpu engine; send n=1 or several requests", param="n"
            )
        prompt_ids = self._prompt_ids(prompt_or_messages)
        room = (self.context_len - len(prompt_ids)) if self.context_len else None
        if room is not None and room <= 0:
            raise EngineInputError(
                f"got a prompt of {len(prompt_ids)} tokens; expected fewer than the model's context of "
                f"{self.context_len}; shorten the prompt",
                param="messages",
            )
        max_new = sampling.max_tokens or self.options.default_max_tokens
        if room is not None:
            max_new = min(max_new, room)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        async with self._slots:
            future = loop.run_in_executor(
                self._executor, self._decode, prompt_ids, sampling, max_new, emit, cancel
            )
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                # Client gone or error: stop the thread before freeing the slot.
                cancel.set()
                try:
                    await future
                except Exception:  # already reported through the queue
                    pass

    def _decode(
        self,
        prompt_ids: List[int],
        sampling: SamplingOptions,
        max_new: int,
        emit: Callable[[Any], None],
        cancel: threading.Event,
    ) -> None:
        import torch

        try:
            generator = None
            if sampling.seed is not None:
                generator = torch.Generator().manual_seed(int(sampling.seed))
            stopper = StopSequenceFilter(sampling.stop)
            stop_ids = set(sampling.stop_token_ids)
            generated: List[int] = []
            emitted_text = ""
            finish = "length"
            past = None
            current = torch.tensor([prompt_ids], dtype=torch.long)
            with torch.inference_mode():
                for _ in range(max_new):
                    if cancel.is_set():
                        finish = "abort"
                        break
                    out = self.model(input_ids=current, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    logits = out.logits[0, -1, :].float()
                    token = self._pick(logits, sampling, generated, generator)
                    if (token in self.eos_ids and not sampling.ignore_eos) or token in stop_ids:
                        finish = "stop"
                        break
                    generated.append(token)
                    text = self.tokenizer.decode(generated, skip_special_tokens=True)
                    current = torch.tensor([[token]], dtype=torch.long)
                    if text.endswith("\ufffd"):
                        continue  # an unfinished multi-byte character; wait for the rest
                    delta, emitted_text = text[len(emitted_text):], text
                    safe = stopper.feed(delta)
                    if safe:
                        emit(GenerationChunk(text=safe))
                    if stopper.stopped:
                        finish = "stop"
                        break
            tail = "" if stopper.stopped else stopper.flush()
            emit(
                GenerationChunk(
                    text=tail,
                    finish_reason=finish,
                    usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(generated)),
                )
            )
        except BaseException as exc:  # surfaced to the awaiting coroutine
            emit(exc)
        finally:
            emit(_DONE)

    def _pick(self, logits, sampling: SamplingOptions, generated: List[int], generator) -> int:
        import torch

        if sampling.logit_bias:
            for token_id, bias in sampling.logit_bias.items():
                if 0 <= token_id < logits.shape[-1]:
                    logits[token_id] += bias
        if sampling.min_tokens and len(generated) < sampling.min_tokens:
            for eos in self.eos_ids:
                logits[eos] = float("-inf")
        if generated and (sampling.presence_penalty or sampling.frequency_penalty):
            counts = torch.bincount(torch.tensor(generated), minlength=logits.shape[-1]).float()
            logits -= sampling.frequency_penalty * counts + sampling.presence_penalty * (counts > 0).float()
        if generated and sampling.repetition_penalty and sampling.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(generated)))
            values = logits[seen]
            logits[seen] = torch.where(
                values > 0, values / sampling.repetition_penalty, values * sampling.repetition_penalty
            )
        if sampling.temperature <= 1e-5:
            return int(torch.argmax(logits))
        logits = logits / sampling.temperature
        if sampling.top_k and sampling.top_k > 0:
            kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1])).values[-1]
            logits[logits < kth] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        if sampling.min_p:
            probs[probs < sampling.min_p * probs.max()] = 0.0
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
            drop = cumulative - sorted_probs > sampling.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=generator))

    async def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
