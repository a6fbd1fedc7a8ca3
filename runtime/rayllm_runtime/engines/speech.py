"""Whisper-style speech-to-text helpers shared by the CPU and vLLM engines.

The decoder prompt is Whisper's (and what vLLM's Whisper model builds):
``<|startoftranscript|><|{language}|><|transcribe|><|notimestamps|>``,
optionally preceded by ``<|startofprev|>`` and the request's prompt text.
The audio goes to the encoder; audio longer than the model's window (30 s
for Whisper) is transcribed window by window.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, List, Optional

from rayllm_runtime.engines.base import EngineInputError

if TYPE_CHECKING:
    import numpy as np

START_OF_TRANSCRIPT = "<|startoftranscript|>"
START_OF_PREV = "<|startofprev|>"
NO_TIMESTAMPS = "<|notimestamps|>"
TRANSCRIBE = "<|transcribe|>"

# Language tokens are <|xx|> (ISO-639-1) or <|xxx|> (haw, yue); every control
# token (<|transcribe|>, <|nospeech|>, ...) has a longer name.
_LANGUAGE_TOKEN_RE = re.compile(r"^<\|([a-z]{2,3})\|>$")


def language_tokens(vocab: Dict[str, int]) -> Dict[str, int]:
    """Language code -> token id, from a Whisper tokenizer's vocabulary."""
    out: Dict[str, int] = {}
    for token, token_id in vocab.items():
        match = _LANGUAGE_TOKEN_RE.match(token)
        if match:
            out[match.group(1)] = int(token_id)
    return out


def check_language(language: Optional[str], known: Dict[str, int]) -> Optional[str]:
    """Normalize the request's ``language`` (None: detect); 400 if unknown to the model."""
    if language is None or language == "":
        return None
    code = language.strip().lower()
    if code not in known:
        sample = ", ".join(sorted(known)[:8])
        raise EngineInputError(
            f"got language={language!r}; expected an ISO-639-1 code the model knows (e.g. {sample}); "
            "fix language or leave it out to detect it",
            param="language",
        )
    return code


def decoder_prompt_text(language: str, prompt: Optional[str] = None, task: str = "transcribe") -> str:
    """The Whisper decoder prompt for one audio window."""
    prefix = f"{START_OF_PREV} {prompt.strip()}" if prompt and prompt.strip() else ""
    return f"{prefix}{START_OF_TRANSCRIPT}<|{language}|><|{task}|>{NO_TIMESTAMPS}"


def split_windows(audio: "np.ndarray", sample_rate: int, window_s: Optional[float]) -> List["np.ndarray"]:
    """Consecutive windows of at most ``window_s`` seconds (one window if None)."""
    if not window_s or audio.shape[0] <= int(window_s * sample_rate):
        return [audio]
    step = int(window_s * sample_rate)
    return [audio[start : start + step] for start in range(0, audio.shape[0], step)]


def join_windows(texts: List[str]) -> str:
    """Transcript of consecutive windows (Whisper text starts with a space)."""
    return " ".join(t.strip() for t in texts if t.strip())
