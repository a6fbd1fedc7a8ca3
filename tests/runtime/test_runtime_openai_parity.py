"""OpenAI parity: /v1/audio/transcriptions, n > 1 and logprobs.

Units (no Ray): the WAV decoder and resampler, the vLLM engine's request
construction against a stub AsyncLLM, the CPU engine's n/logprobs, and the
gateway's transcription guards through Starlette's test client with stub
model handles. Then a real local Ray Serve on loopback, driven with the real
``openai`` client: a tiny random Whisper on the CPU engine transcribes a
generated sine-wave WAV, and the tiny Llama answers with n=2 and logprobs.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import wave
from types import SimpleNamespace

import httpx
import numpy as np
import openai
import pytest

from rayllm_runtime.audio import AudioDecodeError, decode_audio, decode_wav, encode_wav, resample
from rayllm_runtime.config import GatewayArgs, ModelConfig
from rayllm_runtime.engines import SamplingOptions, TranscriptionOptions, create_engine
from rayllm_runtime.testing import free_port, wait_http_ok

GOOD_KEY = "sk-parity-key-123"
SMALL_CPU = {"ray_actor_options": {"num_cpus": 0.1}}


def sine(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def stdlib_wav(seconds: float = 1.0, rate: int = 22050, channels: int = 2) -> bytes:
    """A 16-bit PCM WAV written by the stdlib (independent of our encoder)."""
    samples = np.round(sine(seconds, rate) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(samples, channels).tobytes())
    return buf.getvalue()


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * rate / len(audio))


# -- audio decoding -------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16, 24, 32, -32])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_decoder_sample_formats(bits, channels):
    signal = sine(0.25, 8000)
    audio, rate = decode_wav(encode_wav(signal, 8000, bits=bits, channels=channels))
    assert rate == 8000 and audio.dtype == np.float32 and audio.shape == signal.shape
    tolerance = 1 / 100 if bits == 8 else 1e-4
    assert np.abs(audio - signal).max() < tolerance


def test_wav_decoder_agrees_with_stdlib_and_soundfile():
    data = stdlib_wav(0.5, 22050, channels=2)
    audio, rate = decode_wav(data)
    assert rate == 22050 and len(audio) == 11025
    with wave.open(io.BytesIO(data)) as reader:
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.allclose(audio, frames.mean(axis=1) / 32768.0, atol=1e-6)
    soundfile = pytest.importorskip("soundfile")
    reference, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert np.allclose(audio, reference.mean(axis=1), atol=1e-6)


def test_resampling_keeps_the_pitch():
    for rate in (8000, 22050, 44100, 48000):
        out = resample(sine(1.0, rate).astype(np.float32), rate, 16000)
        assert abs(len(out) - 16000) <= 1 and out.dtype == np.float32
        assert abs(dominant_hz(out, 16000) - 440.0) < 2.0
    same = sine(0.1, 16000).astype(np.float32)
    assert resample(same, 16000, 16000) is same or np.array_equal(resample(same, 16000, 16000), same)
    decoded = decode_audio(stdlib_wav(1.0, 44100, channels=2))
    assert len(decoded) == 16000 and abs(dominant_hz(decoded, 16000) - 440.0) < 2.0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (encode_wav(sine(0.1, 8000), 8000)[:36], "no data chunk"),
        (b"RIFX" + encode_wav(sine(0.1, 8000), 8000)[4:], "big-endian"),
    ],
)
def test_wav_decoder_errors(data, message):
    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(data)


def test_unsupported_formats_name_the_supported_ones(monkeypatch):
    import rayllm_runtime.audio as audio_mod

    with pytest.raises(AudioDecodeError, match="expected WAV"):
        decode_audio(b"definitely not audio " * 10)
    monkeypatch.setattr(audio_mod, "_soundfile", lambda: None)  # an image without soundfile
    with pytest.raises(AudioDecodeError, match=r"not supported; expected WAV \(PCM"):
        decode_audio(b"fLaC" + b"\x00" * 100)
    assert "FLAC" not in audio_mod.supported_formats()


# -- config: the model's task --------------------------------------------------------


def test_task_is_validated_by_the_app_builder_and_ray_llm_validate(tmp_path):
    from pydantic import ValidationError

    from rayllm_runtime.apps import validate_app_args
    from tests.cli.helpers import base, findings, rule_hits

    whisper = {"model_id": "whisper", "model_source": "openai/whisper-large-v3", "task": "transcription",
               "engine_kwargs": {"gpu_memory_utilization": 0.4}, "deployment": {"ray_actor_options": {"num_gpus": 0.5}}}
    args = validate_app_args("rayllm_runtime.apps:build_gateway", {"models": [whisper]})
    assert args.models[0].task.value == "transcription"
    assert ModelConfig(model_id="m", engine="fake").task.value == "generate"
    with pytest.raises(ValidationError, match="task"):
        validate_app_args("rayllm_runtime.apps:build_gateway", {"models": [{**whisper, "task": "speech"}]})

    values = base()
    values["customApps"] = {"gw": {"import_path": "rayllm_runtime.apps:build_gateway", "route_prefix": "/gw",
                                   "args": {"models": [whisper]}}}
    assert rule_hits(findings(tmp_path, values), "RL010", "error") == []
    values["customApps"]["gw"]["args"]["models"][0]["task"] = "speech"
    errors = rule_hits(findings(tmp_path, values), "RL010", "error")
    assert any("task" in f["path"] or "task" in f["message"] for f in errors), errors


# -- vLLM engine: request construction (CPU only, stub AsyncLLM) ------------------


def test_vllm_sampling_params_n_and_logprobs():
    pytest.importorskip("vllm")
    from rayllm_runtime.engines.vllm_engine import to_vllm_sampling_params
    from rayllm_runtime.openai.protocol import ChatCompletionRequest, CompletionRequest

    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3, "logprobs": True, "top_logprobs": 4}
    )
    params = to_vllm_sampling_params(chat.sampling_options())
    assert params.n == 3 and params.logprobs == 4
    chosen_only = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True}
    )
    assert to_vllm_sampling_params(chosen_only.sampling_options()).logprobs == 0
    completion = CompletionRequest.model_validate({"model": "m", "prompt": "x", "n": 2, "logprobs": 2})
    params = to_vllm_sampling_params(completion.sampling_options())
    assert params.n == 2 and params.logprobs == 2
    plain = to_vllm_sampling_params(CompletionRequest.model_validate({"model": "m", "prompt": "x"}).sampling_options())
    assert plain.n == 1 and plain.logprobs is None


def test_vllm_logprobs_to_openai_shape():
    pytest.importorskip("vllm")
    from vllm.logprobs import FlatLogprobs, Logprob

    from rayllm_runtime.engines.vllm_engine import to_openai_logprobs

    positions = [
        # The sampled token (7) ranks 3rd: vLLM adds it to the top 2.
        {5: Logprob(-0.1, rank=1, decoded_token="a"), 6: Logprob(-2.0, rank=2, decoded_token="b"),
         7: Logprob(-3.0, rank=3, decoded_token="c")},
        {8: Logprob(-0.5, rank=1, decoded_token=None), 9: Logprob(-1.0, rank=2, decoded_token="é")},
    ]
    flat = FlatLogprobs()
    for position in positions:
        flat.append(position)
    for container in (positions, flat):
        entries = to_openai_logprobs([7, 8], container, 2, token_text=lambda tid: f"<{tid}>")
        assert [e["token"] for e in entries] == ["c", "<8>"]
        assert [e["logprob"] for e in entries] == [-3.0, -0.5]
        assert [t["token"] for t in entries[0]["top_logprobs"]] == ["a", "b"]
        assert entries[1]["top_logprobs"][1] == {"token": "é", "logprob": -1.0, "bytes": [195, 169]}
    assert all(e["top_logprobs"] == [] for e in to_openai_logprobs([7], positions, 0, str))


def test_vllm_whisper_prompt_is_vllms_format():
    pytest.importorskip("vllm")
    from rayllm_runtime.engines.vllm_engine import whisper_prompt

    audio = sine(1.0, 16000).astype(np.float32)
    ours = whisper_prompt(audio, 16000, "de")
    assert ours["decoder_prompt"] == {"prompt": "<|startoftranscript|><|de|><|transcribe|><|notimestamps|>"}
    assert ours["encoder_prompt"]["prompt"] == ""
    waveform, rate = ours["encoder_prompt"]["multi_modal_data"]["audio"]
    assert waveform is audio and rate == 16000
    # Whisper's previous-text token, then the prompt text, then the task prompt.
    prompted = whisper_prompt(audio, 16000, "en", prompt=" Ray Serve ")
    assert prompted["decoder_prompt"]["prompt"] == (
        "<|startofprev|> Ray Serve<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"
    )
    try:  # vLLM's own builder, where this vLLM has the SpeechToTextParams API
        from vllm.config.speech_to_text import SpeechToTextConfig, SpeechToTextParams
        from vllm.model_executor.models.whisper import WhisperForConditionalGeneration
    except ImportError:
        return
    theirs = WhisperForConditionalGeneration.get_generation_prompt(
        SpeechToTextParams(audio=audio, stt_config=SpeechToTextConfig(), model_config=None, language="de")
    )
    assert theirs["decoder_prompt"] == ours["decoder_prompt"]
    assert theirs["encoder_prompt"]["prompt"] == ours["encoder_prompt"]["prompt"]
    their_audio, their_rate = theirs["encoder_prompt"]["multi_modal_data"]["audio"]
    assert their_audio is audio and int(their_rate) == 16000


class StubTokenizer:
    """Enough of a Whisper tokenizer for the vLLM engine's bookkeeping."""

    def __init__(self):
        self.vocab = {"<|endoftext|>": 0, "<|startoftranscript|>": 1, "<|en|>": 2, "<|de|>": 3,
                      "<|transcribe|>": 4, "<|notimestamps|>": 5, "<|startofprev|>": 6, "hi": 7}

    def get_vocab(self):
        return dict(self.vocab)

    def encode(self, text, add_special_tokens=False):
        return [1] * text.count("<|") + [7] * len(text.replace("|>", " ").split(" "))

    def decode(self, ids):
        return "".join(f"t{i}" for i in ids)


class StubAsyncLLM:
    """Records (prompt, params, request_id) and replays scripted outputs."""

    def __init__(self, script):
        self.script = script
        self.calls = []
        self.aborted = []
        self.model_config = SimpleNamespace(max_model_len=448)

    async def generate(self, prompt, params, request_id):
        self.calls.append((prompt, params, request_id))
        for output in self.script(prompt, params, request_id):
            yield output

    async def abort(self, request_id):
        self.aborted.append(request_id)


def completion(index=0, text="", token_ids=(), finish_reason=None, logprobs=None):
    return SimpleNamespace(index=index, text=text, token_ids=list(token_ids), finish_reason=finish_reason,
                           logprobs=logprobs)


def test_vllm_engine_transcription_requests():
    pytest.importorskip("vllm")
    from vllm.sampling_params import RequestOutputKind

    from rayllm_runtime.engines.vllm_engine import VllmEngine

    def script(prompt, params, request_id):
        if request_id.endswith("-lang"):
            yield SimpleNamespace(prompt_token_ids=[1], outputs=[completion(token_ids=[3], finish_reason="length")])
        else:
            yield SimpleNamespace(prompt_token_ids=[1, 3, 4, 5],
                                  outputs=[completion(text=" hallo welt ", token_ids=[7, 7], finish_reason="stop")])

    engine = VllmEngine("whisper", "/nowhere", {}, task="transcription")
    engine.engine, engine.tokenizer = StubAsyncLLM(script), StubTokenizer()
    engine.languages = {"en": 2, "de": 3}
    audio = sine(40.0, 16000).astype(np.float32)  # 40 s: two 30 s windows
    result = asyncio.run(engine.transcribe(audio, TranscriptionOptions(temperature=0.2), "req"))
    calls = engine.engine.calls
    assert [c[2] for c in calls] == ["req-lang", "req-0", "req-1"]
    detect_prompt, detect_params, _ = calls[0]
    assert detect_prompt["decoder_prompt"] == {"prompt": "<|startoftranscript|>"}
    assert detect_params.max_tokens == 1 and detect_params.temperature == 0.0
    assert sorted(detect_params.allowed_token_ids) == [2, 3]
    first, params, _ = calls[1]
    assert first["decoder_prompt"]["prompt"] == "<|startoftranscript|><|de|><|transcribe|><|notimestamps|>"
    waveform, rate = first["encoder_prompt"]["multi_modal_data"]["audio"]
    assert rate == 16000 and len(waveform) == 30 * 16000
    assert len(calls[2][0]["encoder_prompt"]["multi_modal_data"]["audio"][0]) == 10 * 16000
    assert params.temperature == pytest.approx(0.2) and params.output_kind == RequestOutputKind.FINAL_ONLY
    assert 0 < params.max_tokens < 448
    assert result.text == "hallo welt hallo welt" and result.language == "de"
    assert result.duration_s == pytest.approx(40.0)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (8, 4)

    # A given language skips detection; an unknown one is a 400, not a request.
    engine.engine.calls.clear()
    asyncio.run(engine.transcribe(audio[:16000], TranscriptionOptions(language="EN", prompt="hi"), "r2"))
    assert [c[2] for c in engine.engine.calls] == ["r2-0"]
    assert engine.engine.calls[0][0]["decoder_prompt"]["prompt"].startswith("<|startofprev|> hi<|startoftranscript|><|en|>")
    from rayllm_runtime.engines import EngineInputError

    with pytest.raises(EngineInputError, match="language"):
        asyncio.run(engine.transcribe(audio[:16000], TranscriptionOptions(language="xx"), "r3"))
    chat_engine = VllmEngine("chat", "/nowhere", {})
    with pytest.raises(EngineInputError, match="does not support audio transcription"):
        asyncio.run(chat_engine.transcribe(audio, TranscriptionOptions(), "r4"))


def test_vllm_engine_streams_choices_and_logprobs():
    pytest.importorskip("vllm")
    from vllm.logprobs import Logprob

    from rayllm_runtime.engines.vllm_engine import VllmEngine

    def lp(token_id, text):
        return [{token_id: Logprob(-0.25, rank=1, decoded_token=text)}]

    def script(prompt, params, request_id):
        assert params.n == 2 and params.logprobs == 0
        yield SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[completion(0, "A", [10], None, lp(10, "A"))])
        yield SimpleNamespace(prompt_token_ids=None, outputs=[completion(1, "B", [11], None, lp(11, "B"))])
        yield SimpleNamespace(prompt_token_ids=None, outputs=[
            completion(0, "a", [12], "stop", lp(12, "a")), completion(1, "b", [13], "length", lp(13, "b"))])

    engine = VllmEngine("m", "/nowhere", {})
    engine.engine, engine.tokenizer = StubAsyncLLM(script), StubTokenizer()

    async def run():
        sampling = SamplingOptions(n=2, logprobs=0, max_tokens=2)
        return [c async for c in engine.generate("prompt", sampling, "req")]

    chunks = asyncio.run(run())
    text = {i: "".join(c.text for c in chunks if c.index == i) for i in (0, 1)}
    assert text == {0: "Aa", 1: "Bb"}
    assert [(c.index, c.finish_reason) for c in chunks if c.finish_reason] == [(0, "stop"), (1, "length")]
    assert chunks[-1].usage.prompt_tokens == 3 and chunks[-1].usage.completion_tokens == 4
    assert [e["token"] for c in chunks if c.index == 1 for e in (c.logprobs or [])] == ["B", "b"]
    assert engine.engine.aborted == []


# -- CPU engine and deployment plumbing ---------------------------------------------


def test_cpu_engine_n_and_logprobs(tiny_model_path):
    engine = create_engine(ModelConfig(model_id="tiny", engine="cpu", model_source=str(tiny_model_path)))
    asyncio.run(engine.start())

    async def run(sampling):
        return [c async for c in engine.generate("The quick", sampling, "t")]

    chunks = asyncio.run(run(SamplingOptions(n=2, max_tokens=4, temperature=0, logprobs=3)))
    for index in (0, 1):
        entries = [e for c in chunks if c.index == index for e in (c.logprobs or [])]
        assert len(entries) == 4
        for entry in entries:
            # Greedy: the chosen token is the most likely one.
            assert len(entry["top_logprobs"]) == 3
            assert entry["logprob"] == pytest.approx(entry["top_logprobs"][0]["logprob"])
            assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][1]["logprob"]
            assert entry["logprob"] <= 0 and entry["bytes"] == list(entry["token"].encode())
    assert chunks[-1].usage.completion_tokens == 8
    plain = asyncio.run(run(SamplingOptions(max_tokens=2, temperature=0)))
    assert all(c.logprobs is None and c.index == 0 for c in plain)
    # Seeded sampling: reproducible, and the two choices share one generator.
    seeded = [asyncio.run(run(SamplingOptions(n=2, max_tokens=5, temperature=1.0, seed=3))) for _ in range(2)]
    assert [c.text for c in seeded[0]] == [c.text for c in seeded[1]]


def test_coalesce_keeps_choices_apart():
    from rayllm_runtime.deployment import coalesce
    from rayllm_runtime.engines import GenerationChunk, Usage

    items = [
        GenerationChunk(text="a", logprobs=[{"token": "a"}]),
        GenerationChunk(text="b", logprobs=[{"token": "b"}]),
        GenerationChunk(text="c", index=1),
        GenerationChunk(finish_reason="stop", index=1, usage=Usage(1, 3)),
        GenerationChunk(text="d"),
    ]

    async def source():
        for item in items:
            yield item

    async def run():
        return [c async for c in coalesce(source())]

    merged = asyncio.run(run())
    assert [(c.index, c.text) for c in merged] == [(0, "ab"), (1, "c"), (0, "d")]
    assert merged[0].logprobs == [{"token": "a"}, {"token": "b"}]
    assert merged[1].finish_reason == "stop" and merged[1].usage.completion_tokens == 3


# -- gateway guards with stub model handles (no Ray) ---------------------------------


class StubHandle:
    """A DeploymentHandle double: options(...).remote(payload) -> awaitable."""

    def __init__(self, reply):
        self.reply = reply
        self.payloads = []

    def options(self, **_options):
        return self

    def remote(self, payload):
        self.payloads.append(payload)

        async def answer():
            return self.reply(payload)

        return answer()


@pytest.fixture()
def gateway(tmp_path):
    from starlette.testclient import TestClient

    from rayllm_runtime.gateway_core import GatewayCore
    from rayllm_runtime.openai.http_routes import build_fastapi_app

    (tmp_path / "keys").write_text(GOOD_KEY + "\n")
    handles = {
        "stt": StubHandle(lambda p: {"text": "secret transcript", "language": "en",
                                     "duration_s": len(p["audio"]) / 4 / 16000,
                                     "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}),
        "chat": StubHandle(lambda p: {"text": "x", "finish_reason": "stop", "usage": None}),
    }

    def build(**overrides):
        args = GatewayArgs(
            models=[
                {"model_id": "stt", "engine": "fake", "task": "transcription"},
                {"model_id": "chat", "engine": "fake"},
            ],
            upstreams=[{"model_ids": ["remote"], "base_url": "http://upstream.invalid/app"}],
            auth={"enabled": True, "api_keys_path": str(tmp_path / "keys")},
            max_request_bytes=64 * 1024,
            **overrides,
        )
        core = GatewayCore(args, handles)
        client = TestClient(build_fastapi_app(core))
        client.core = core
        return client, handles

    return build


def upload(client, key=GOOD_KEY, file=None, **fields):
    files = {"file": ("a.wav", file if file is not None else stdlib_wav(0.5, 16000, 1), "audio/wav")}
    data = {"model": "stt", **fields}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/audio/transcriptions", files=files, data=data, headers=headers)


def openai_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return body["error"]


def test_transcription_retries_a_lost_replica(gateway, monkeypatch):
    """Like chat: a replica lost before answering is retried, then 503 with Retry-After."""
    from rayllm_runtime.openai import serving

    monkeypatch.setattr(serving, "REPLICA_LOSS_BACKOFF_S", 0.0)

    class ActorDiedError(RuntimeError):  # matched by name, as Ray's own class is
        pass

    client, handles = gateway()
    good = handles["stt"].reply
    calls = []

    def flaky(payload):
        calls.append(payload["request_id"])
        if len(calls) == 1:
            raise ActorDiedError("replica gone")
        return good(payload)

    handles["stt"].reply = flaky
    ok = upload(client)
    assert ok.status_code == 200 and ok.json()["text"] == "secret transcript", ok.text
    assert len(calls) == 2 and calls[0] == calls[1]

    def dead(payload):
        calls.append(payload["request_id"])
        raise ActorDiedError("replica gone")

    handles["stt"].reply = dead
    calls.clear()
    lost = upload(client)
    assert openai_error(lost, 503)["code"] == "model_unavailable"
    assert lost.headers["retry-after"] == "1" and len(calls) == 1 + serving.REPLICA_LOSS_RETRIES


def test_transcription_guards_and_formats(gateway):
    client, handles = gateway()
    ok = upload(client, language="en", prompt="names", temperature="0.3")
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"text": "secret transcript", "usage": {"type": "duration", "seconds": 1}}
    sent = handles["stt"].payloads[-1]
    assert sent["options"] == {"language": "en", "prompt": "names", "temperature": 0.3}
    assert len(np.frombuffer(sent["audio"], dtype=np.float32)) == 8000
    assert upload(client, response_format="text").text == "secret transcript"
    verbose = upload(client, response_format="verbose_json").json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en" and verbose["duration"] == 0.5

    assert openai_error(upload(client, key=None), 401)["code"] == "invalid_api_key"
    openai_error(upload(client, key="sk-wrong"), 401)
    big = upload(client, file=encode_wav(sine(3.0, 16000), 16000))  # ~96 KB > 64 KiB
    assert openai_error(big, 413)["code"] == "request_too_large"
    assert "does not support audio transcription" in openai_error(upload(client, model="chat"), 400)["message"]
    assert openai_error(upload(client, model="nope"), 404)["code"] == "model_not_found"
    bad_audio = openai_error(upload(client, file=b"\x00\x01 not audio at all" * 20), 400)
    assert "Could not decode" in bad_audio["message"] and "WAV" in bad_audio["message"]
    assert bad_audio["param"] == "file"
    assert "srt" in openai_error(upload(client, response_format="srt"), 400)["message"]
    assert "stream" in openai_error(upload(client, stream="true"), 400)["message"]
    no_file = client.post("/v1/audio/transcriptions", data={"model": "stt"},
                          headers={"authorization": f"Bearer {GOOD_KEY}"})
    assert "multipart" in openai_error(no_file, 400)["message"]
    missing = client.post("/v1/audio/transcriptions", files={"other": ("x", b"1")}, data={"model": "stt"},
                          headers={"authorization": f"Bearer {GOOD_KEY}"})
    assert openai_error(missing, 400)["param"] == "file"
    json_body = client.post("/v1/audio/transcriptions", json={"model": "stt"},
                            headers={"authorization": f"Bearer {GOOD_KEY}"})
    openai_error(json_body, 400)
    # The transcription model refuses chat; metrics carry the endpoint.
    chat = client.post("/v1/chat/completions", json={"model": "stt", "messages": [{"role": "user", "content": "x"}]},
                       headers={"authorization": f"Bearer {GOOD_KEY}"})
    assert "/v1/audio/transcriptions" in openai_error(chat, 400)["message"]
    metrics = client.get("/metrics").text
    assert 'rayllm_requests_total{endpoint="transcriptions",model="stt",status="200"}' in metrics
    # Rejected before the body is read: the model is not known yet.
    assert 'rayllm_requests_total{endpoint="transcriptions",model="unknown",status="413"}' in metrics
    assert 'rayllm_requests_in_flight{model="stt"} 0.0' in metrics


def test_transcription_is_forwarded_to_upstreams_unchanged(gateway):
    client, _ = gateway()
    seen = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b'name="language"\r\n\r\nzz' in request.content:
            return httpx.Response(400, json={"error": {"message": "bad language", "type": "invalid_request_error",
                                                       "param": "language", "code": None}})
        return httpx.Response(200, text="upstream words", headers={"content-type": "text/plain; charset=utf-8"})

    backend = client.core.router.resolve("remote")
    backend._client = httpx.AsyncClient(base_url=backend.config.base_url, transport=httpx.MockTransport(upstream))
    answer = upload(client, model="remote", response_format="text")
    assert answer.status_code == 200 and answer.text == "upstream words"
    request = seen[-1]
    assert str(request.url) == "http://upstream.invalid/app/v1/audio/transcriptions"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b"RIFF" in request.content and b'name="response_format"' in request.content
    assert "authorization" not in request.headers  # the client's key stays at the gateway
    error = openai_error(upload(client, model="remote", language="zz"), 400)
    assert error["message"] == "bad language"


@pytest.mark.parametrize("endpoint", ["chat", "transcription"])
def test_upstream_failures_map_to_clean_openai_errors(gateway, endpoint):
    """Both endpoints share the upstream mapping: timeout 504, unreachable 502, a non-OpenAI error body mapped."""
    client, _ = gateway()
    mode = {}

    def upstream(request: httpx.Request) -> httpx.Response:
        if mode["kind"] == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if mode["kind"] == "down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503, text="<html>maintenance</html>")

    backend = client.core.router.resolve("remote")
    backend._client = httpx.AsyncClient(base_url=backend.config.base_url, transport=httpx.MockTransport(upstream))

    def send():
        if endpoint == "transcription":
            return upload(client, model="remote")
        return client.post("/v1/chat/completions", json={"model": "remote", "messages": [{"role": "user", "content": "x"}]},
                           headers={"authorization": f"Bearer {GOOD_KEY}"})

    for kind, status, words in (("timeout", 504, "timed out"), ("down", 502, "unreachable"),
                                ("html", 503, "answered HTTP 503")):
        mode["kind"] = kind
        assert words in openai_error(send(), status)["message"], kind


@pytest.mark.parametrize("include_prompts", [False, True])
def test_transcription_audit_never_logs_audio_or_transcript(gateway, include_prompts):
    from rayllm_runtime.audit import AUDIT_LOGGER_NAME

    client, _ = gateway(audit_log={"include_prompts": include_prompts})
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    logger.addHandler(handler)
    try:
        assert upload(client, prompt="hint words").status_code == 200
        openai_error(upload(client, model="chat"), 400)
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(r) for r in records]
    assert [(l["endpoint"], l["model"], l["status"]) for l in lines] == [
        ("transcriptions", "stt", 200), ("transcriptions", "chat", 400)]
    assert lines[0]["prompt_tokens"] == 4 and lines[0]["completion_tokens"] == 2
    text = "\n".join(records)
    assert "secret transcript" not in text and "RIFF" not in text
    assert ("hint words" in text) == include_prompts


# -- the real thing: local Ray Serve + the openai client -------------------------------


@pytest.fixture(scope="module")
def tiny_whisper_path(tmp_path_factory):
    from rayllm_runtime.testing import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper", max_target_positions=24)


@pytest.fixture(scope="module")
def serve_base(tiny_model_path, tiny_whisper_path, tmp_path_factory):
    import ray
    from ray import serve

    from rayllm_runtime.apps import build_gateway

    secret = tmp_path_factory.mktemp("secret")
    (secret / "api-key").write_text(GOOD_KEY + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_gateway(
            {
                "models": [
                    {"model_id": "whisper", "engine": "cpu", "task": "transcription",
                     "model_source": str(tiny_whisper_path), "deployment": SMALL_CPU},
                    {"model_id": "tiny", "engine": "cpu", "model_source": str(tiny_model_path),
                     "deployment": SMALL_CPU},
                ],
                "auth": {"enabled": True, "api_keys_path": str(secret)},
                "max_request_bytes": 256 * 1024,
                "ingress_deployment": SMALL_CPU,
            }
        )
        serve.run(app, name="parity", route_prefix="/")
        wait_http_ok(f"{base}/healthz")
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture()
def client(serve_base):
    return openai.OpenAI(base_url=f"{serve_base}/v1", api_key=GOOD_KEY, max_retries=0, timeout=120)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_transcription_with_the_openai_client(client, tmp_path):
    path = tmp_path / "sine.wav"
    path.write_bytes(stdlib_wav(1.5, 22050, channels=2))  # resampled and mixed down by the gateway
    with open(path, "rb") as audio:
        result = client.audio.transcriptions.create(model="whisper", file=audio, language="en", temperature=0)
    assert isinstance(result.text, str) and result.text
    assert result.usage.type == "duration" and result.usage.seconds == 2
    with open(path, "rb") as audio:
        text = client.audio.transcriptions.create(model="whisper", file=audio, language="en", response_format="text")
    assert isinstance(text, str) and text.strip() == result.text  # greedy: the same transcript
    with open(path, "rb") as audio:
        verbose = client.audio.transcriptions.create(model="whisper", file=audio, response_format="verbose_json")
    assert verbose.duration == pytest.approx(1.5, abs=0.01) and verbose.language  # detected
    with open(path, "rb") as audio, pytest.raises(openai.BadRequestError, match="does not support audio"):
        client.audio.transcriptions.create(model="tiny", file=audio)
    with pytest.raises(openai.BadRequestError, match="language"):
        client.audio.transcriptions.create(model="whisper", file=("a.wav", stdlib_wav(0.2)), language="xx")
    with pytest.raises(openai.BadRequestError, match="decode"):
        client.audio.transcriptions.create(model="whisper", file=("a.mp3", b"ID3 this is not an mp3" * 4))
    with pytest.raises(openai.APIStatusError) as too_big:
        client.audio.transcriptions.create(model="whisper", file=("big.wav", encode_wav(sine(10.0, 16000), 16000)))
    assert too_big.value.status_code == 413
    denied = openai.OpenAI(base_url=client.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        denied.audio.transcriptions.create(model="whisper", file=("a.wav", stdlib_wav(0.2)))
    with pytest.raises(openai.BadRequestError, match="transcription model"):
        client.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_n_and_logprobs_with_the_openai_client(client):
    messages = [{"role": "user", "content": "Hello there"}]
    chat = client.chat.completions.create(
        model="tiny", messages=messages, n=2, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in chat.choices] == [0, 1]
    assert chat.choices[0].message.content == chat.choices[1].message.content  # greedy
    assert chat.usage.completion_tokens == 6
    content = chat.choices[1].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob) for t in content)  # greedy

    stream = client.chat.completions.create(
        model="tiny", messages=messages, n=2, max_tokens=3, temperature=0, logprobs=True, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
            for i in (0, 1)}
    assert text[0] == text[1] == chat.choices[0].message.content
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finishes == {0: "length", 1: "length"}
    streamed_lp = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert len(streamed_lp) == 6 and all(t.top_logprobs == [] for t in streamed_lp)
    assert chunks[-1].usage.completion_tokens == 6

    completion = client.completions.create(model="tiny", prompt="The quick", n=2, max_tokens=3, temperature=0, logprobs=2)
    assert [c.index for c in completion.choices] == [0, 1] and completion.usage.completion_tokens == 6
    legacy = completion.choices[0].logprobs
    assert len(legacy.tokens) == 3 and len(legacy.token_logprobs) == 3 and len(legacy.top_logprobs[0]) <= 2
    assert legacy.text_offset[0] == 0 and legacy.text_offset == sorted(legacy.text_offset)
    streamed = list(client.completions.create(model="tiny", prompt="The quick", max_tokens=3, temperature=0,
                                              logprobs=1, stream=True))
    offsets = [o for c in streamed if c.choices and c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert offsets == legacy.text_offset and all(not math.isnan(o) for o in offsets)
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="tiny", messages=messages, top_logprobs=2)
