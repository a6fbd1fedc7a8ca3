"""The one async interface every engine implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Union

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


@dataclass
class GenerationChunk:
    """A text delta; the last chunk of a generation has finish_reason and usage."""

    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict() if self.usage else None,
        }


class Engine(abc.ABC):
    """An inference engine for one model."""

    #: Whether chat content may contain image parts.
    supports_images: bool = False

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights; called once in the replica before serving."""

    @abc.abstractmethod
    def generate(
        self, prompt_or_messages: PromptOrMessages, sampling: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        """Stream text deltas; the final chunk carries finish_reason and usage."""

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve."""

    async def shutdown(self) -> None:
        """Release resources (threads, GPU memory)."""


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
