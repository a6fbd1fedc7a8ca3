"""Test helpers: a tiny causal LM built locally (no downloads).

Reused by the runtime tests, CLI tests and benchmarks. The model is random,
so its text is gibberish; it exercises loading, chat templating, streaming
and token accounting exactly like a real model.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Sequence, Union

# A Jinja chat template in the style of many instruct models; the assistant
# turn is opened when add_generation_prompt is set.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "Ray Serve routes requests to model replicas.",
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules pods onto nodes with GPUs.",
    "Large language models generate text one token at a time.",
    "Hello! How can I help you today? Say something nice.",
    "vLLM and transformers both load weights from a model directory.",
    "system user assistant: answer briefly, please.",
]

_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_model(
    path: Union[str, os.PathLike],
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 512,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny Llama-architecture model + tokenizer to ``path``; return it.

    Idempotent: an existing ``config.json`` under path is reused.
    The default head size (hidden_size / num_heads = 32) is one vLLM's CPU attention kernels
    accept (they refuse odd sizes such as 8 or 12); on a GPU any of 64/128 works too.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    # Byte-level BPE: every input is encodable and decoding round-trips.
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.model_max_length = max_position_embeddings
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # A zero output row gives EOS a logit of 0 while the max of the random
        # logits is positive, so greedy decoding never ends early: tests get
        # non-empty, length-limited completions.
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out


def build_tiny_lora(
    path: Union[str, os.PathLike],
    base: Union[str, os.PathLike],
    *,
    rank: int = 8,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    seed: int = 1,
) -> Path:
    """Write a PEFT-format LoRA adapter for the tiny model at ``base`` to ``path``; return it.

    Random A and B matrices on ``target_modules`` of every layer (B non-zero, so the adapter
    really changes the outputs): what vLLM's ``load_lora_adapter`` reads, without peft.
    """
    import json

    import torch
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(base) / "config.json").read_text())
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    heads, kv_heads = (
        int(config["num_attention_heads"]),
        int(config.get("num_key_value_heads") or config["num_attention_heads"]),
    )
    head_dim = hidden // heads
    out_features = {"q_proj": hidden, "k_proj": kv_heads * head_dim, "v_proj": kv_heads * head_dim, "o_proj": hidden}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for module in target_modules:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, hidden, generator=generator) * 0.1
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_features[module], rank, generator=generator) * 0.1
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": rank,
                "lora_alpha": 2 * rank,
                "lora_dropout": 0.0,
                "bias": "none",
                "target_modules": list(target_modules),
                "base_model_name_or_path": str(base),
                "fan_in_fan_out": False,
                "inference_mode": True,
                "modules_to_save": None,
            },
            indent=2,
        )
    )
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, timeout_s: float = 60.0, headers=None) -> None:
    """Poll url until it answers 200 (raises AssertionError on timeout)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last: object = None  # the last status code or transport error, for the message
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5.0, headers=headers)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready: {last}")


# Whisper's decoder control tokens (besides one <|xx|> token per language).
_WHISPER_CONTROL = [
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]


def build_tiny_whisper(
    path: Union[str, os.PathLike],
    *,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 400,
    max_target_positions: int = 64,
    seed: int = 0,
) -> Path:
    """Write a tiny random Whisper model + processor to ``path``; return it.

    A byte-level BPE trained on a few lines plus Whisper's special tokens
    (one ``<|xx|>`` per language transformers knows), a standard
    WhisperFeatureExtractor (16 kHz, 80 mel bins, 30 s windows) and a
    WhisperConfig with tiny dims. Its transcripts are gibberish, but loading,
    feature extraction, the decoder prompt and token accounting are real.
    Idempotent like ``build_tiny_model``.
    """
    import json

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    out = Path(path)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 4, trainer=trainer)
    # GPT-2 style vocab.json + merges.txt: the files WhisperTokenizer loads.
    bpe = json.loads(raw.to_str())["model"]
    work = out / "_bpe"
    work.mkdir(exist_ok=True)
    (work / "vocab.json").write_text(json.dumps(bpe["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]]
    (work / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = WhisperTokenizer.from_pretrained(str(work))
    specials = _WHISPER_CONTROL[:1] + [f"<|{code}|>" for code in LANGUAGES] + _WHISPER_CONTROL[1:]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()

    feature_extractor = WhisperFeatureExtractor()
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out)

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=feature_extractor.feature_size,
        d_model=d_model,
        encoder_layers=num_layers,
        decoder_layers=num_layers,
        encoder_attention_heads=num_heads,
        decoder_attention_heads=num_heads,
        encoder_ffn_dim=d_model * 2,
        decoder_ffn_dim=d_model * 2,
        max_source_positions=feature_extractor.nb_max_frames // 2,
        max_target_positions=max_target_positions,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        # As in build_tiny_model: a zero row (the output projection is tied
        # to the embeddings) keeps greedy decoding from ending at once.
        model.model.decoder.embed_tokens.weight[eot].zero_()
    gen = model.generation_config
    gen.decoder_start_token_id = ids["<|startoftranscript|>"]
    gen.eos_token_id = eot
    gen.pad_token_id = eot
    # Whisper's own generation keys: GenerationConfig keeps them as plain attributes
    # (its class does not declare them).
    whisper_keys = {
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "lang_to_id": {f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        "task_to_id": {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        "is_multilingual": True,
    }
    for key, value in whisper_keys.items():
        setattr(gen, key, value)
    model.save_pretrained(out)
    return out
