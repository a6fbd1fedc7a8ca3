"""OpenAI request and response bodies.

Request models are lenient (unknown fields are accepted and logged at debug)
because clients send vendor extensions; fields we cannot honour but that
change the meaning of a request are rejected with a 400 instead.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rayllm_runtime.engines.base import SamplingOptions

logger = logging.getLogger("rayllm.protocol")

MAX_STOP_SEQUENCES = 8
MAX_TOP_LOGPROBS = 20


class OpenAIRequestModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self):
        if self.model_extra:
            logger.debug("ignoring unknown request fields: %s", sorted(self.model_extra))
        return self


class StreamOptions(OpenAIRequestModel):
    include_usage: bool = Field(default=False, description="Send a final chunk with token usage.")


class ChatMessage(OpenAIRequestModel):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(description="Author of the message.")
    content: Optional[Union[str, List[Dict[str, Any]]]] = Field(
        default=None, description="Text, or a list of content parts (text / image_url)."
    )
    name: Optional[str] = Field(default=None, description="Optional participant name.")


class SamplingFields(OpenAIRequestModel):
    """Fields shared by chat and text completions."""

    model: str = Field(min_length=1, description="Model id from GET /v1/models.")
    max_tokens: Optional[int] = Field(default=None, ge=1, description="Upper bound of generated tokens.")
    temperature: Optional[float] = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    top_p: Optional[float] = Field(default=None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(default=1, ge=1, le=16, description="Number of choices; usage sums their tokens.")
    stream: bool = Field(default=False, description="Stream Server-Sent Events.")
    stream_options: Optional[StreamOptions] = Field(default=None, description="Streaming options.")
    stop: Optional[Union[str, List[str]]] = Field(default=None, description="Stop sequences.")
    seed: Optional[int] = Field(default=None, description="Seed for reproducible sampling.")
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2, description="Presence penalty.")
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2, description="Frequency penalty.")
    logit_bias: Optional[Dict[str, float]] = Field(default=None, description="Token id -> bias.")
    user: Optional[str] = Field(default=None, description="End-user id (audit only).")
    # Common extensions (vLLM-style).
    top_k: Optional[int] = Field(default=None, description="Top-k sampling (-1 or None: off).")
    min_p: Optional[float] = Field(default=None, ge=0, le=1, description="Min-p sampling.")
    repetition_penalty: Optional[float] = Field(default=None, gt=0, description="Repetition penalty.")
    min_tokens: Optional[int] = Field(default=None, ge=0, description="Generate at least this many tokens.")
    ignore_eos: Optional[bool] = Field(default=None, description="Keep generating past EOS.")
    stop_token_ids: Optional[List[int]] = Field(default=None, description="Token ids that stop generation.")

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value):
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"got {len(value)} stop sequences; expected at most {MAX_STOP_SEQUENCES}")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, value):
        if value:
            for key in value:
                if not str(key).lstrip("-").isdigit():
                    raise ValueError(f"got logit_bias key {key!r}; expected token ids as strings of digits")
        return value

    @model_validator(mode="after")
    def _reject_unsupported(self):
        extra = self.model_extra or {}
        for name in ("echo", "suffix", "tools", "functions", "best_of"):
            value = extra.get(name)
            if value not in (None, False, 0, [], ""):
                if name == "best_of" and value == 1:
                    continue
                raise ValueError(f"got {name}={value!r}; expected it unset; this server does not support {name}")
        fmt = extra.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
            raise ValueError(f"got response_format type {fmt.get('type')!r}; expected 'text'; drop response_format")
        return self

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling_options(self) -> SamplingOptions:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingOptions.from_dict(
            {
                "max_tokens": self.requested_max_tokens(),
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": None if self.top_k in (None, -1, 0) else self.top_k,
                "min_p": self.min_p,
                "n": self.n,
                "stop": stop,
                "stop_token_ids": self.stop_token_ids,
                "seed": self.seed,
                "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty,
                "repetition_penalty": self.repetition_penalty,
                "logit_bias": self.logit_bias,
                "ignore_eos": self.ignore_eos,
                "min_tokens": self.min_tokens,
                "logprobs": self.requested_logprobs(),
            }
        )

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_tokens

    def requested_logprobs(self) -> Optional[int]:
        """None: no logprobs; k: the sampled token's logprob and the top k."""
        return None


class ChatCompletionRequest(SamplingFields):
    messages: List[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: Optional[int] = Field(default=None, ge=1, description="Newer name of max_tokens.")
    logprobs: Optional[bool] = Field(default=None, description="Return the logprob of each generated token.")
    top_logprobs: Optional[int] = Field(
        default=None, ge=0, le=MAX_TOP_LOGPROBS, description="Also return the k most likely tokens per position."
    )

    @model_validator(mode="after")
    def _top_needs_logprobs(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError(
                f"got top_logprobs={self.top_logprobs} without logprobs=true; expected logprobs=true with "
                "top_logprobs; set logprobs to true"
            )
        return self

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens

    def requested_logprobs(self) -> Optional[int]:
        return (self.top_logprobs or 0) if self.logprobs else None

    def messages_payload(self) -> List[Dict[str, Any]]:
        return [m.model_dump(exclude_none=True, include={"role", "content", "name"}) for m in self.messages]

    def prompt_text(self) -> str:
        parts = []
        for m in self.messages:
            if isinstance(m.content, str):
                parts.append(f"{m.role}: {m.content}")
            elif m.content:
                text = "".join(p.get("text", "") for p in m.content if isinstance(p, dict))
                parts.append(f"{m.role}: {text}")
        return "\n".join(parts)


class CompletionRequest(SamplingFields):
    prompt: Union[str, List[str]] = Field(description="Prompt text (one prompt per request).")
    logprobs: Optional[int] = Field(
        default=None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Return each token's logprob and the k most likely tokens per position.",
    )

    def requested_logprobs(self) -> Optional[int]:
        return self.logprobs

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"got {len(value)} prompts; expected exactly one; send one request per prompt")
            return value[0]
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# -- responses ---------------------------------------------------------------


def random_hex() -> str:
    """32 random hex digits: unique ids for requests and responses.

    Not secrets, so Python's PRNG (reseeded from the OS at start and after
    fork) does; uuid4() costs a getrandom syscall per id, which shows up in
    the gateway's per-request CPU.
    """
    return f"{random.getrandbits(128):032x}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{random_hex()}"


def now() -> int:
    return int(time.time())


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatResponseMessage
    finish_reason: Optional[str]
    # {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}; plain
    # dicts: they are built by chat_logprobs, no per-token validation needed.
    logprobs: Optional[Dict[str, Any]] = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: List[ChatChoice]
    usage: UsageInfo


class ChatDelta(BaseModel):
    role: Optional[Literal["assistant"]] = None
    content: Optional[str] = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Optional[str] = None
    logprobs: Optional[Dict[str, Any]] = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: List[ChatChunkChoice]
    usage: Optional[UsageInfo] = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Optional[str] = None
    # {"tokens", "token_logprobs", "top_logprobs", "text_offset"} (completion_logprobs).
    logprobs: Optional[Dict[str, Any]] = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: List[CompletionChoice]
    usage: Optional[UsageInfo] = None


def chat_logprobs(entries: Optional[List[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
    """Engine logprob entries -> a chat choice's ``logprobs``."""
    return None if entries is None else {"content": entries, "refusal": None}


def completion_logprobs(entries: Optional[List[Dict[str, Any]]], text_offset: int = 0) -> Optional[Dict[str, Any]]:
    """Engine logprob entries -> a completion choice's legacy ``logprobs``.

    ``text_offset`` is the character offset of the first token in the
    choice's text (non-zero for later deltas of a stream).
    """
    if entries is None:
        return None
    offsets = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rayllm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: List[ModelCard]


# -- audio transcriptions ------------------------------------------------------

TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")


class TranscriptionRequest(OpenAIRequestModel):
    """The form fields of POST /v1/audio/transcriptions (besides ``file``)."""

    model: str = Field(min_length=1, description="Model id of a transcription model from GET /v1/models.")
    language: Optional[str] = Field(
        default=None, max_length=16, description="ISO-639-1 code of the spoken language; detected when absent."
    )
    prompt: Optional[str] = Field(default=None, description="Text that precedes the audio (names, spelling, style).")
    response_format: str = Field(default="json", description="json, text or verbose_json.")
    temperature: float = Field(default=0.0, ge=0, le=1, description="Sampling temperature (0: greedy).")
    stream: bool = Field(default=False, description="Streamed transcription (not supported).")
    timestamp_granularities: List[str] = Field(
        default_factory=list, description="Word/segment timestamps (not supported)."
    )
    include: List[str] = Field(default_factory=list, description="Extra outputs such as logprobs (not supported).")

    @field_validator("response_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value not in TRANSCRIPTION_FORMATS:
            raise ValueError(
                f"got response_format {value!r}; expected one of {', '.join(TRANSCRIPTION_FORMATS)} "
                "(srt and vtt are not supported)"
            )
        return value

    @model_validator(mode="after")
    def _reject_unsupported(self):
        if self.stream:
            raise ValueError("got stream=true; expected false; streamed transcription is not supported")
        if self.timestamp_granularities:
            raise ValueError("got timestamp_granularities; expected none; this server does not produce timestamps")
        if self.include:
            raise ValueError(f"got include={self.include!r}; expected none; this server does not support include")
        return self


class TranscriptionUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int


class TranscriptionResponse(BaseModel):
    text: str
    usage: TranscriptionUsage


class TranscriptionVerboseResponse(BaseModel):
    """verbose_json without segments/words: no timestamps are produced."""

    task: Literal["transcribe"] = "transcribe"
    language: Optional[str]
    duration: float
    text: str
    usage: TranscriptionUsage
