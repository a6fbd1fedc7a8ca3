"""The one async interface every engine implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    import numpy as np

# A chat conversation in OpenAI shape: [{"role": "user", "content": "..."}].
Messages = List[Dict[str, Any]]
PromptOrMessages = Union[str, Messages]


class EngineInputError(ValueError):
    """The request cannot be served as asked (too long, unsupported option).

    Carried to the client as a 400 with this message, so it must never hold
    secrets or internal detail.
    """

    def __init__(self, message: str, *, param: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass
class SamplingOptions:
    """OpenAI sampling parameters after validation, engine-neutral."""

    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    n: int = 1
    stop: List[str] = field(default_factory=list)
    stop_token_ids: List[int] = field(default_factory=list)
    seed: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: Optional[float] = None
    logit_bias: Dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    min_tokens: int = 0
    #: None: no logprobs; k >= 0: the sampled token's logprob plus the top k.
    logprobs: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SamplingOptions":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and v is not None}
        if "logit_bias" in known:
            known["logit_bias"] = {int(k): float(v) for k, v in known["logit_bias"].items()}
        return cls(**known)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> Dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


#: One generated token's logprob entry, in OpenAI's chat shape:
#: {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}.
TokenLogprob = Dict[str, Any]


def token_logprob(token: str, logprob: float, top: Sequence[Tuple[str, float]] = ()) -> TokenLogprob:
    """Build one ``TokenLogprob`` (bytes are the token text's UTF-8 bytes)."""

    def entry(text: str, value: float) -> Dict[str, Any]:
        # -inf (a token the sampler excluded) is not valid JSON.
        return {"token": text, "logprob": max(float(value), -9999.0), "bytes": list(text.encode("utf-8"))}

    return {**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in top]}


@dataclass
class GenerationChunk:
    """A text delta of choice ``index``.

    Each choice's last chunk has its finish_reason; the usage (summed over
    all choices when n > 1) comes with the generation's very last chunk.
    ``logprobs`` lists the entries of the tokens produced since the
    previous chunk of the same choice, when they were requested.
    """

    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    index: int = 0
    logprobs: Optional[List[TokenLogprob]] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict() if self.usage else None,
        }
        # Only when set, so the common n=1 reply stays as small as before.
        if self.index:
            out["index"] = self.index
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


@dataclass
class TranscriptionOptions:
    """Options of one /v1/audio/transcriptions request, engine-neutral."""

    language: Optional[str] = None  # ISO-639-1 code; None: detect from the audio
    prompt: Optional[str] = None  # text that precedes the audio (spelling, style)
    temperature: float = 0.0

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TranscriptionOptions":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and v is not None})


@dataclass
class TranscriptionResult:
    text: str
    language: Optional[str] = None
    duration_s: float = 0.0
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "duration_s": self.duration_s,
            "usage": self.usage.to_dict(),
        }


class Engine(abc.ABC):
    """An inference engine for one model."""

    #: Whether chat content may contain image parts.
    supports_images: bool = False
    #: Whether ``transcribe`` is implemented (speech-to-text models).
    supports_transcription: bool = False

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights; called once in the replica before serving."""

    @abc.abstractmethod
    def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        """Stream text deltas; the final chunk carries finish_reason and usage."""

    async def transcribe(
        self, audio: "np.ndarray", options: TranscriptionOptions, request_id: str
    ) -> TranscriptionResult:
        """Speech to text of mono float32 ``audio`` at 16 kHz (optional capability).

        Engines without it answer the request with a 400.
        """
        raise EngineInputError(
            f"model {getattr(self, 'model_id', '?')!r} does not support audio transcription; "
            "send audio to a model with task: transcription",
            param="model",
        )

    # Optional hooks, not abstract: an engine with nothing to check or release keeps the no-op.
    async def check_health(self) -> None:  # noqa: B027
        """Raise if the engine can no longer serve."""

    async def shutdown(self) -> None:  # noqa: B027
        """Release resources (threads, GPU memory)."""


def reject_generation_on_transcription_model(model_id: str, task: str) -> None:
    """Raise the 400 for chat/completions sent to a speech-to-text model."""
    if task == "transcription":
        raise EngineInputError(
            f"got a text generation request for model {model_id!r}, a transcription model; "
            "expected audio; send it to /v1/audio/transcriptions",
            param="model",
        )


def text_of_content(content: Any, *, allow_images: bool = False) -> str:
    """Flatten OpenAI message content (str or list of parts) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: List[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(str(part.get("text", "")))
        elif kind in ("image_url", "input_image") and allow_images:
            continue
        else:
            raise EngineInputError(
                f"got a content part of type {kind!r}; expected 'text' parts for this model; "
                "send text only or use a multimodal model",
                param="messages",
            )
    return "".join(parts)


class StopSequenceFilter:
    """Cuts a text stream at the first stop string.

    Holds back the tail that could still become a stop string so a client
    never sees a partial stop sequence.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self.stops), default=0) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Return the part of delta safe to emit; sets ``stopped`` on a hit."""
        if not self.stops:
            return delta
        self._pending += delta
        cut = min((i for i in (self._pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self._pending, self.stopped = self._pending[:cut], "", True
            return out
        if self._hold <= 0:
            out, self._pending = self._pending, ""
            return out
        out, self._pending = self._pending[: -self._hold], self._pending[-self._hold :]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
