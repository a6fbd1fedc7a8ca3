"""The model's engine settings.

RL006: engine_kwargs keys are vLLM engine arguments (and renamed/removed ones are named).
RL007: dtype and max_model_len suit the GPU and the model.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from ..errors import ERROR, WARNING, Finding
from .context import Context, as_dict
from .registry import rule

# Accelerators without bfloat16 support (compute capability < 8.0).
NO_BF16 = {"T4", "V100", "P100", "P4", "K80", "TESLA-T4", "TESLA-V100"}

# Context lengths (max_position_embeddings / documented context) of models our
# values files use. Keys are lower-cased Hugging Face ids; unknown ids are skipped.
MODEL_CONTEXT = {
    "tiiuae/falcon3-1b-instruct": 8192,
    "tiiuae/falcon3-1b-base": 8192,
    "tiiuae/falcon3-3b-instruct": 32768,
    "tiiuae/falcon3-7b-instruct": 32768,
    "tiiuae/falcon3-7b-base": 32768,
    "tiiuae/falcon3-10b-instruct": 32768,
    "tiiuae/falcon3-10b-base": 32768,
    "tiiuae/falcon-7b": 2048,
    "tiiuae/falcon-7b-instruct": 2048,
    "tiiuae/falcon-40b": 2048,
    "tiiuae/falcon-40b-instruct": 2048,
    "qwen/qwen2.5-0.5b-instruct": 32768,
    "qwen/qwen2.5-1.5b-instruct": 32768,
    "qwen/qwen2.5-3b-instruct": 32768,
    "qwen/qwen2.5-7b-instruct": 32768,
    "meta-llama/llama-2-7b-hf": 4096,
    "meta-llama/llama-2-7b-chat-hf": 4096,
    "meta-llama/llama-2-13b-chat-hf": 4096,
    "meta-llama/meta-llama-3-8b-instruct": 8192,
    "meta-llama/llama-3.1-8b-instruct": 131072,
    "meta-llama/llama-3.2-1b-instruct": 131072,
    "meta-llama/llama-3.2-3b-instruct": 131072,
}

# vLLM engine args renamed or removed (name -> replacement hint).
VLLM_RENAMED = {
    "disable_log_requests": "enable_log_requests (inverted; requests are not logged by default)",
    "use_v2_block_manager": "nothing: the v2 block manager is the only one; remove it",
    "max_seq_len_to_capture": "compilation_config / max_model_len: CUDA graph capture sizes are derived; remove it",
    "swap_space": "nothing: CPU swap space was removed with the V0 engine; remove it",
    "num_scheduler_steps": "nothing: multi-step scheduling was removed with the V0 engine; remove it",
    "worker_use_ray": "distributed_executor_backend: ray",
    "task": "runner / convert (vLLM's pooling/generation selection)",
}


@functools.lru_cache(maxsize=1)
def shipped_engine_args() -> Tuple[str, frozenset]:
    data = json.loads((Path(__file__).resolve().parent.parent / "vllm_engine_args.json").read_text())
    return data["vllm_version"], frozenset(data["engine_args"])


def installed_engine_args() -> Optional[Tuple[str, frozenset]]:
    """vLLM's own EngineArgs/AsyncEngineArgs fields when vllm imports (slow: only asked when needed).

    RAYLLM_VLLM_ARGS=shipped is read on every call, outside the cache: only the import is cached."""
    if os.environ.get("RAYLLM_VLLM_ARGS", "").lower() == "shipped":
        return None
    return _vllm_engine_args()


@functools.lru_cache(maxsize=1)
def _vllm_engine_args() -> Optional[Tuple[str, frozenset]]:
    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        import contextlib
        import dataclasses

        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # keep vLLM's INFO lines off our stdout (JSON)
        with contextlib.redirect_stdout(sys.stderr):
            import vllm  # noqa: F401
            from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs

        names = {f.name for f in dataclasses.fields(EngineArgs)} | {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        return getattr(vllm, "__version__", "?"), frozenset(names)
    except Exception:
        return None


def known_engine_args(keys: Iterable[str]) -> Tuple[str, frozenset]:
    """The known set: vLLM's installed dataclass fields when importable, else the list shipped with us.

    The shipped list answers first; vLLM is imported only when a key is not in it
    (importing vLLM takes seconds)."""
    version, names = shipped_engine_args()
    if all(k in names for k in keys):
        return f"vLLM {version} (shipped list)", names
    installed = installed_engine_args()
    if installed:
        return f"vLLM {installed[0]} (installed)", installed[1]
    return f"vLLM {version} (shipped list)", names


@rule("RL006", "engine_kwargs keys are vLLM engine arguments")
def rule_engine_kwargs(ctx: Context) -> Iterator[Finding]:
    for name, m in ctx.models().items():
        ek = as_dict(m.get("engine_kwargs"))
        if not ek:
            continue
        source, known = known_engine_args(ek)
        for key in ek:
            path = ("models", name, "engine_kwargs", key)
            if key in VLLM_RENAMED and key not in known:
                yield ctx.finding(
                    "RL012",
                    WARNING,
                    path,
                    f"vLLM engine arg {key!r} was removed or renamed",
                    ek[key],
                    VLLM_RENAMED[key],
                    VLLM_RENAMED[key],
                )
                continue
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.7)
                fix = f"did you mean {' / '.join(close)}?" if close else "remove it or check vLLM's engine arguments"
                yield ctx.finding(
                    "RL006",
                    ERROR,
                    path,
                    f"{key!r} is not an engine argument of {source}",
                    ek[key],
                    "a vLLM EngineArgs field",
                    fix,
                )


def _model_source(m: Dict[str, Any]) -> Optional[str]:
    mlc = as_dict(m.get("model_loading_config"))
    src = mlc.get("model_source")
    if isinstance(src, str):
        return src
    if isinstance(src, dict):
        return None
    return mlc.get("model_id") if isinstance(mlc.get("model_id"), str) else None


@rule("RL007", "dtype and max_model_len suit the GPU and the model")
def rule_dtype(ctx: Context) -> Iterator[Finding]:
    tiers = ctx.tiers()
    for name, m in ctx.models().items():
        ek = as_dict(m.get("engine_kwargs"))
        tier_name = m.get("tier")
        tier = tiers.get(tier_name) if isinstance(tier_name, str) else None
        dtype = str(ek.get("dtype", "")).lower()
        accel = str(as_dict(tier).get("acceleratorType", "")).upper()
        if tier and dtype in ("bfloat16", "bf16") and accel in NO_BF16:
            yield ctx.finding(
                "RL007",
                ERROR,
                ("models", name, "engine_kwargs", "dtype"),
                f"{accel} GPUs (tier {m['tier']!r}) have no bfloat16 support; vLLM refuses to start",
                ek.get("dtype"),
                "float16 (or half) on T4/V100",
                "set engine_kwargs.dtype: float16",
            )
        src = _model_source(m)
        limit = MODEL_CONTEXT.get(src.lower()) if src else None
        mml = ek.get("max_model_len")
        if limit and isinstance(mml, int) and not isinstance(mml, bool) and mml > limit:
            yield ctx.finding(
                "RL007",
                ERROR,
                ("models", name, "engine_kwargs", "max_model_len"),
                f"{src} declares a context of {limit} tokens; vLLM rejects a larger max_model_len",
                mml,
                f"<= {limit}",
                f"set max_model_len to {limit} or less",
            )
