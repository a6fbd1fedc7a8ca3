"""Audio decoding for /v1/audio/transcriptions, with numpy only.

WAV (RIFF) files are parsed here: PCM 8/16/24/32-bit integers and IEEE
float 32/64-bit, any channel count (mixed down to mono), plain or
WAVE_FORMAT_EXTENSIBLE headers. Other containers (FLAC, OGG, MP3) are read
with ``soundfile`` when it is importable (the vLLM images have it) and are
a clear error otherwise. Everything is resampled to 16 kHz, the rate
Whisper-style models expect.
"""

from __future__ import annotations

import io
import struct
from typing import Tuple

import numpy as np

#: Sample rate of the waveforms handed to engines.
TARGET_SAMPLE_RATE = 16_000

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_MAX_CHANNELS = 32
_MAX_RATE = 768_000


class AudioDecodeError(ValueError):
    """The upload is not audio we can decode; the message is client-safe."""


def _soundfile():
    try:
        import soundfile  # optional: FLAC / OGG / MP3 through libsndfile

        return soundfile
    except Exception:  # missing module or missing libsndfile
        return None


def supported_formats() -> str:
    """Human-readable list of accepted formats (used in 400 messages)."""
    wav = "WAV (PCM 8/16/24/32-bit or float32/64, mono or multi-channel)"
    return f"{wav}, FLAC, OGG or MP3" if _soundfile() is not None else wav


def decode_wav(data: bytes) -> Tuple[np.ndarray, int]:
    """Parse a RIFF/WAVE file; return (mono float32 samples in [-1, 1], sample rate)."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioDecodeError("the file is not a WAV (RIFF/WAVE) file")
    if data[:4] == b"RIFX":
        raise AudioDecodeError("big-endian WAV (RIFX) is not supported; send little-endian WAV")
    fmt = None
    samples = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]  # a streamed WAV may declare more than it holds
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise AudioDecodeError("the WAV fmt chunk is truncated")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise AudioDecodeError("the WAV extensible fmt chunk is truncated")
                (tag,) = struct.unpack_from("<H", body, 24)  # first bytes of the sub-format GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            samples = body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise AudioDecodeError("the WAV file has no fmt chunk")
    if samples is None:
        raise AudioDecodeError("the WAV file has no data chunk")
    tag, channels, rate, block_align, bits = fmt
    if not 1 <= channels <= _MAX_CHANNELS or not 1 <= rate <= _MAX_RATE:
        raise AudioDecodeError(f"the WAV header is invalid ({channels} channels at {rate} Hz)")
    width = bits // 8
    if bits % 8 or block_align != width * channels:
        raise AudioDecodeError(f"the WAV header is invalid ({bits} bits, block align {block_align})")
    usable = len(samples) - len(samples) % block_align
    raw = samples[:usable]
    if tag == _WAVE_FORMAT_PCM and bits == 8:
        audio = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _WAVE_FORMAT_PCM and bits == 16:
        audio = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == _WAVE_FORMAT_PCM and bits == 24:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        audio = values.astype(np.float32) / float(1 << 23)
    elif tag == _WAVE_FORMAT_PCM and bits == 32:
        audio = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    elif tag == _WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        audio = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        audio = np.nan_to_num(np.clip(audio, -1.0, 1.0))
    else:
        kind = {_WAVE_FORMAT_PCM: "PCM", _WAVE_FORMAT_IEEE_FLOAT: "float"}.get(tag, f"format tag {tag:#06x}")
        raise AudioDecodeError(f"WAV {kind} with {bits} bits per sample is not supported")
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def resample(audio: np.ndarray, src_rate: int, dst_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling through the real FFT (numpy only).

    Dropping the bins above the new Nyquist frequency is the anti-aliasing
    filter when downsampling; zero bins are added when upsampling.
    """
    if src_rate == dst_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    n_in = audio.shape[0]
    n_out = max(1, int(round(n_in * dst_rate / src_rate)))
    spectrum = np.fft.rfft(audio.astype(np.float64))
    keep = min(spectrum.shape[0], n_out // 2 + 1)
    resized = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    resized[:keep] = spectrum[:keep]
    out = np.fft.irfft(resized, n=n_out) * (n_out / n_in)
    return out.astype(np.float32)


def decode_audio(data: bytes, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Decode an uploaded file into mono float32 samples at ``target_rate``.

    Raises AudioDecodeError (a 400 for the client) naming the supported
    formats when the bytes are not decodable audio.
    """
    if not data:
        raise AudioDecodeError("the audio file is empty")
    if data[:4] in (b"RIFF", b"RIFX") and data[8:12] == b"WAVE":
        audio, rate = decode_wav(data)
    else:
        soundfile = _soundfile()
        if soundfile is None:
            raise AudioDecodeError(f"the audio format is not supported; expected {supported_formats()}")
        try:
            frames, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception:
            raise AudioDecodeError(f"the file could not be decoded as audio; expected {supported_formats()}") from None
        audio = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    if audio.size == 0:
        raise AudioDecodeError("the audio file holds no samples")
    return resample(audio, int(rate), target_rate)


def encode_wav(audio: np.ndarray, sample_rate: int, *, bits: int = 16, channels: int = 1) -> bytes:
    """A WAV file of ``audio`` (mono floats in [-1, 1]); for tests and examples.

    bits: 8, 16, 24 or 32 for PCM, or -32 for IEEE float32. With channels > 1
    the mono signal is written to every channel.
    """
    clipped = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
    if bits == 8:
        frames, tag, width = np.round(clipped * 127.0 + 128.0).astype(np.uint8), _WAVE_FORMAT_PCM, 1
    elif bits == 16:
        frames, tag, width = np.round(clipped * 32767.0).astype("<i2"), _WAVE_FORMAT_PCM, 2
    elif bits == 24:
        ints = np.round(clipped * ((1 << 23) - 1)).astype(np.int32)
        frames = np.stack([(ints >> s) & 0xFF for s in (0, 8, 16)], axis=1).astype(np.uint8)
        tag, width = _WAVE_FORMAT_PCM, 3
    elif bits == 32:
        frames, tag, width = np.round(clipped * ((1 << 31) - 1)).astype("<i4"), _WAVE_FORMAT_PCM, 4
    elif bits == -32:
        frames, tag, width = clipped.astype("<f4"), _WAVE_FORMAT_IEEE_FLOAT, 4
    else:
        raise ValueError(f"got bits={bits}; expected 8, 16, 24, 32 or -32 (float)")
    per_sample = frames.reshape(len(clipped), -1)
    payload = np.repeat(per_sample, channels, axis=0).reshape(len(clipped), channels, -1).tobytes()
    block_align = width * channels
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block_align, block_align, width * 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    if len(payload) % 2:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body
