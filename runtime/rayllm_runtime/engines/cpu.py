"""CPU engine on Hugging Face transformers.

A hand-written decode loop (instead of ``model.generate``) gives exact token
counts, our own stop handling, logprobs, and cancellation when the client
goes away. It runs in worker threads so the replica's event loop stays
responsive. With ``task: transcription`` it loads a Whisper-style
speech-to-text model (AutoModelForSpeechSeq2Seq + its processor) instead and
decodes from the same decoder prompt vLLM's Whisper uses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set, Tuple

from rayllm_runtime.config import CpuEngineOptions
from rayllm_runtime.engines import speech
from rayllm_runtime.engines.base import (
    Engine,
    EngineInputError,
    GenerationChunk,
    PromptOrMessages,
    SamplingOptions,
    StopSequenceFilter,
    TokenLogprob,
    TranscriptionOptions,
    TranscriptionResult,
    Usage,
    reject_generation_on_transcription_model,
    text_of_content,
    token_logprob,
)

logger = logging.getLogger("rayllm.engine.cpu")

_DONE = object()


class CpuEngine(Engine):
    def __init__(self, model_id: str, source: str, options: Dict[str, Any], task: str = "generate"):
        self.model_id = model_id
        self.source = source
        self.options = CpuEngineOptions.model_validate(options)
        self.task = task
        self.supports_transcription = task == "transcription"
        self._executor = ThreadPoolExecutor(max_workers=self.options.max_concurrency, thread_name_prefix="rayllm-cpu")
        self._slots = asyncio.Semaphore(self.options.max_concurrency)
        # transformers' model and tokenizer (or processor), loaded by start(); transformers is
        # imported lazily, so they are typed loosely.
        self.model: Any = None
        self.tokenizer: Any = None
        self.eos_ids: Set[int] = set()
        self.context_len: Optional[int] = None
        self._token_texts: Dict[int, str] = {}
        # Speech-to-text models only.
        self.feature_extractor: Any = None
        self.languages: Dict[str, int] = {}
        self._suppressed: List[int] = []
        self._begin_suppressed: List[int] = []

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        dtype = "auto" if self.options.dtype == "auto" else getattr(torch, self.options.dtype)
        import transformers

        # transformers renamed torch_dtype to dtype in 4.56.
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        dtype_arg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        if self.task == "transcription":
            self._load_speech(dtype_arg, dtype)
            return
        self.tokenizer = AutoTokenizer.from_pretrained(self.source, trust_remote_code=self.options.trust_remote_code)
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
        messages = [{**m, "content": text_of_content(m.get("content"))} for m in prompt_or_messages]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already places BOS and friends; don't add them twice.
        return list(tok(text, add_special_tokens=False)["input_ids"])

    # -- generation --------------------------------------------------------
    async def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        if self.model is None:
            raise RuntimeError("engine not started")
        reject_generation_on_transcription_model(self.model_id, self.task)
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
            # n choices are decoded one after the other in the same slot.
            future = loop.run_in_executor(self._executor, self._decode, prompt_ids, sampling, max_new, emit, cancel)
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
                # One generator for all choices: reproducible, yet different choices.
                generator = torch.Generator().manual_seed(int(sampling.seed))
            completion_tokens = 0
            for index in range(sampling.n):
                finish, count, tail, logprobs = self._decode_choice(
                    index, prompt_ids, sampling, max_new, emit, cancel, generator
                )
                completion_tokens += count
                last = index == sampling.n - 1 or finish == "abort"
                emit(
                    GenerationChunk(
                        text=tail,
                        finish_reason=finish,
                        index=index,
                        logprobs=logprobs,
                        usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=completion_tokens)
                        if last
                        else None,
                    )
                )
                if finish == "abort":
                    break
        except BaseException as exc:  # surfaced to the awaiting coroutine
            emit(exc)
        finally:
            emit(_DONE)

    def _decode_choice(
        self,
        index: int,
        prompt_ids: List[int],
        sampling: SamplingOptions,
        max_new: int,
        emit: Callable[[Any], None],
        cancel: threading.Event,
        generator,
    ) -> Tuple[str, int, str, Optional[List[TokenLogprob]]]:
        """Decode one choice, emitting its text deltas.

        Returns (finish_reason, tokens generated, text held back for the
        final chunk, logprobs not yet sent) for the caller's final chunk.
        """
        import torch

        want_logprobs = sampling.logprobs is not None
        pending: Optional[List[TokenLogprob]] = [] if want_logprobs else None
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
                # Logprobs of the model's own distribution (before penalties,
                # bias and temperature), as vLLM reports them by default.
                raw = torch.log_softmax(logits, dim=-1) if want_logprobs else None
                token = self._pick(logits, sampling, generated, generator)
                if (token in self.eos_ids and not sampling.ignore_eos) or token in stop_ids:
                    finish = "stop"
                    break
                generated.append(token)
                if pending is not None:
                    pending.append(self._logprob_entry(raw, token, sampling.logprobs or 0))
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                current = torch.tensor([[token]], dtype=torch.long)
                if text.endswith("\ufffd"):
                    continue  # an unfinished multi-byte character; wait for the rest
                delta, emitted_text = text[len(emitted_text) :], text
                safe = stopper.feed(delta)
                if safe:
                    emit(GenerationChunk(text=safe, index=index, logprobs=pending))
                    pending = [] if want_logprobs else None
                if stopper.stopped:
                    finish = "stop"
                    break
        tail = "" if stopper.stopped else stopper.flush()
        return finish, len(generated), tail, pending

    def _token_text(self, token_id: int) -> str:
        text = self._token_texts.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False)
            if len(self._token_texts) < 200_000:
                self._token_texts[token_id] = text
        return text

    def _logprob_entry(self, raw, token: int, top_k: int) -> TokenLogprob:
        import torch

        top: List[Tuple[str, float]] = []
        if top_k > 0:
            values, ids = torch.topk(raw, min(top_k, raw.shape[-1]))
            top = [(self._token_text(int(i)), float(v)) for v, i in zip(values.tolist(), ids.tolist(), strict=True)]
        return token_logprob(self._token_text(token), float(raw[token]), top)

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

    # -- speech to text (task: transcription) -------------------------------
    def _load_speech(self, dtype_arg: str, dtype) -> None:
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        trust = self.options.trust_remote_code
        processor = AutoProcessor.from_pretrained(self.source, trust_remote_code=trust)
        self.feature_extractor = getattr(processor, "feature_extractor", None)
        self.tokenizer = getattr(processor, "tokenizer", None)
        if self.feature_extractor is None or self.tokenizer is None:
            raise ValueError(
                f"got no feature extractor/tokenizer processor at {self.source}; expected a Whisper-style "
                "speech-to-text model for task: transcription"
            )
        self.model = AutoModelForSpeechSeq2Seq.from_pretrained(
            self.source, trust_remote_code=trust, **{dtype_arg: dtype}
        )
        self.model.eval()
        vocab = self.tokenizer.get_vocab()
        for token in (speech.START_OF_TRANSCRIPT, speech.TRANSCRIBE, speech.NO_TIMESTAMPS):
            if token not in vocab:
                raise ValueError(
                    f"got a tokenizer without {token} at {self.source}; expected a Whisper-style model "
                    "for task: transcription"
                )
        self.languages = speech.language_tokens(vocab)
        eos = self.tokenizer.eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()
        # Only text and end-of-text may be generated: no control, language or
        # timestamp tokens (the prompt asks for <|notimestamps|>).
        controls = {int(i) for t, i in vocab.items() if t.startswith("<|") and t.endswith("|>")}
        gen = getattr(self.model, "generation_config", None)
        controls.update(int(i) for i in (getattr(gen, "suppress_tokens", None) or []))
        self._suppressed = sorted(controls - self.eos_ids)
        self._begin_suppressed = [int(i) for i in (getattr(gen, "begin_suppress_tokens", None) or [])]
        self.context_len = getattr(self.model.config, "max_target_positions", None) or 448
        logger.info("loaded speech-to-text %s from %s (%d languages)", self.model_id, self.source, len(self.languages))

    async def transcribe(self, audio, options: TranscriptionOptions, request_id: str) -> TranscriptionResult:
        if self.model is None:
            raise RuntimeError("engine not started")
        if not self.supports_transcription:
            return await super().transcribe(audio, options, request_id)
        language = speech.check_language(options.language, self.languages)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        async with self._slots:
            future = loop.run_in_executor(self._executor, self._transcribe_sync, audio, options, language, cancel)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                cancel.set()  # client gone: stop the worker before freeing the slot
                try:
                    await future
                except Exception:
                    pass
                raise

    def _transcribe_sync(
        self, audio, options: TranscriptionOptions, language: Optional[str], cancel
    ) -> TranscriptionResult:
        import torch

        rate = int(self.feature_extractor.sampling_rate)
        if rate != 16000:
            from rayllm_runtime.audio import resample

            audio = resample(audio, 16000, rate)
        windows = speech.split_windows(audio, rate, getattr(self.feature_extractor, "chunk_length", 30))
        texts: List[str] = []
        usage = Usage()
        with torch.inference_mode():
            for window in windows:
                if cancel.is_set():
                    break
                features = self.feature_extractor(window, sampling_rate=rate, return_tensors="pt").input_features
                features = features.to(self.model.dtype)
                encoded = self.model.get_encoder()(input_features=features)
                if language is None:
                    language = self._detect_language(encoded)
                prefix = self._speech_prefix(language, options.prompt)
                tokens = self._decode_speech(encoded, prefix, options.temperature, cancel)
                usage.prompt_tokens += len(prefix)
                usage.completion_tokens += len(tokens)
                texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return TranscriptionResult(
            text=speech.join_windows(texts),
            language=language,
            duration_s=audio.shape[0] / float(rate),
            usage=usage,
        )

    def _speech_prefix(self, language: str, prompt: Optional[str]) -> List[int]:
        tok = self.tokenizer
        prefix = list(tok(speech.decoder_prompt_text(language), add_special_tokens=False)["input_ids"])
        if prompt and prompt.strip():
            assert self.context_len is not None  # set by _load_speech
            # Whisper keeps at most half its context for the previous text (its end).
            room = max(0, self.context_len // 2 - 1)
            text_ids = list(tok(" " + prompt.strip(), add_special_tokens=False)["input_ids"])[-room:]
            prefix = [tok.convert_tokens_to_ids(speech.START_OF_PREV)] + text_ids + prefix
        return prefix

    def _detect_language(self, encoded) -> str:
        import torch

        if not self.languages:
            raise EngineInputError(
                f"got no language; expected one for model {self.model_id!r}, which has no language tokens; "
                "set language",
                param="language",
            )
        start = self.tokenizer.convert_tokens_to_ids(speech.START_OF_TRANSCRIPT)
        out = self.model(encoder_outputs=encoded, decoder_input_ids=torch.tensor([[start]]))
        logits = out.logits[0, -1, :]
        codes = list(self.languages)
        ids = torch.tensor([self.languages[c] for c in codes])
        return codes[int(torch.argmax(logits[ids]))]

    def _decode_speech(self, encoded, prefix: List[int], temperature: float, cancel) -> List[int]:
        import torch

        assert self.context_len is not None  # set by _load_speech
        max_new = max(1, self.context_len - len(prefix))
        tokens: List[int] = []
        past = None
        current = torch.tensor([prefix], dtype=torch.long)
        suppressed = torch.tensor(self._suppressed, dtype=torch.long)
        for step in range(max_new):
            if cancel.is_set():
                break
            out = self.model(encoder_outputs=encoded, decoder_input_ids=current, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1, :].float()
            if len(suppressed):
                logits[suppressed] = float("-inf")
            if step == 0 and self._begin_suppressed:
                logits[self._begin_suppressed] = float("-inf")
            if temperature <= 1e-5:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1))
            if token in self.eos_ids:
                break
            tokens.append(token)
            current = torch.tensor([[token]], dtype=torch.long)
        return tokens

    async def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
