"""``ray-llm plan``: per-tier capacity and a rough does-the-model-fit check.

Weights = parameters x bytes per parameter (dtype / quantization). Usable GPU
memory per engine = GPU GiB x gpu_memory_utilization (default 0.9) x tp x pp
(x gpuShare for fractional engines). What is left is the KV cache. Without the
model's architecture the KV cache per token is *estimated* (stated in the
output): ~ 2 (K,V) x layers x hidden x 2 bytes, approximated from the parameter
count as ``0.5 MiB per token per 7B parameters`` (Llama-2-7B without GQA; models
with grouped-query attention need 4-8x less, so the estimate is conservative).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

from .rules.context import as_dict as _dict
from .rules.context import as_int as _int
from .rules.context import as_num as _num
from .rules.context import gpus_per_replica, parallel, replica_bounds, tier_gpus

GIB = 1024**3

GPU_MEMORY_GIB = {
    "T4": 16,
    "L4": 24,
    "A10G": 24,
    "A10": 24,
    "A100-40G": 40,
    "A100": 40,
    "A100-80G": 80,
    "H100": 80,
    "H200": 141,
    "V100": 16,
    "L40S": 48,
    "L40": 48,
    "A6000": 48,
}

BYTES_PER_PARAM = {
    "float32": 4.0,
    "fp32": 4.0,
    "float": 4.0,
    "bfloat16": 2.0,
    "bf16": 2.0,
    "float16": 2.0,
    "fp16": 2.0,
    "half": 2.0,
    "auto": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "bitsandbytes": 1.0,
    "int4": 0.5,
    "awq": 0.5,
    "gptq": 0.5,
    "awq_marlin": 0.5,
    "gptq_marlin": 0.5,
    "marlin": 0.5,
}

# KV-cache estimate without the architecture: MiB per token per billion parameters.
KV_MIB_PER_TOKEN_PER_B = 0.5 / 7.0

_SIZE = re.compile(r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)\s*[bB](?![a-zA-Z])")


def infer_params_b(model: Dict[str, Any]) -> Tuple[Optional[float], str]:
    if _num(model.get("parameterCountBillions"), 0) > 0:
        return float(model["parameterCountBillions"]), "parameterCountBillions"
    mlc = _dict(model.get("model_loading_config"))
    for key in ("model_source", "model_id"):
        text = mlc.get(key)
        if isinstance(text, str):
            hits = _SIZE.findall(text.replace("-", " ").replace("_", " "))
            if hits:
                return float(hits[-1]), f"inferred from {key} {text!r}"
    return None, "unknown (set parameterCountBillions)"


def bytes_per_param(ek: Dict[str, Any]) -> Tuple[float, str]:
    q = str(ek.get("quantization") or "").lower()
    if q and q in BYTES_PER_PARAM:
        return BYTES_PER_PARAM[q], f"quantization {q}"
    d = str(ek.get("dtype") or "auto").lower()
    return BYTES_PER_PARAM.get(d, 2.0), f"dtype {d}"


def gpu_memory(tier: Dict[str, Any]) -> Tuple[Optional[float], str]:
    if _num(tier.get("gpuMemoryGiB"), 0) > 0:
        return float(tier["gpuMemoryGiB"]), "gpuMemoryGiB"
    accel = str(tier.get("acceleratorType", ""))
    for key, gib in GPU_MEMORY_GIB.items():
        if key.upper() == accel.upper():
            return float(gib), f"{accel} table"
    return None, f"unknown accelerator {accel!r} (set gpuMemoryGiB)"


def model_fit(model: Dict[str, Any], tier: Dict[str, Any]) -> Dict[str, Any]:
    ek = _dict(model.get("engine_kwargs"))
    tp, pp = parallel(model)
    share = _num(model.get("gpuShare"), 1.0) if tp * pp == 1 else 1.0
    util = _num(ek.get("gpu_memory_utilization"), 0.9)
    params, params_src = infer_params_b(model)
    bpp, bpp_src = bytes_per_param(ek)
    gib, gib_src = gpu_memory(tier)
    out: Dict[str, Any] = {
        "parameters_b": params,
        "parameters_source": params_src,
        "bytes_per_param": bpp,
        "bytes_source": bpp_src,
        "gpu_memory_gib": gib,
        "gpu_memory_source": gib_src,
        "gpu_memory_utilization": util,
        "engine_gpus": tp * pp,
        "gpu_share": share,
    }
    if params is None or gib is None:
        out.update(verdict="unknown", weights_gib=None, usable_gib=None, kv_cache_gib=None, sequences=None)
        return out
    weights = params * 1e9 * bpp / GIB
    usable = gib * util * tp * pp * share
    kv = usable - weights
    mml = _int(ek.get("max_model_len"), 0)
    kv_per_token_mib = KV_MIB_PER_TOKEN_PER_B * params
    seqs = None
    if mml > 0 and kv > 0:
        seqs = math.floor(kv * 1024 / (kv_per_token_mib * mml))
    if kv <= 0:
        verdict = "does-not-fit"
    elif kv < 0.1 * usable or (mml and seqs is not None and seqs < 2):
        verdict = "tight"
    else:
        verdict = "fits"
    out.update(
        weights_gib=round(weights, 2),
        usable_gib=round(usable, 2),
        kv_cache_gib=round(kv, 2),
        max_model_len=mml or None,
        sequences_at_max_model_len=seqs,
        verdict=verdict,
    )
    return out


def build_plan(values: Dict[str, Any]) -> Dict[str, Any]:
    tiers = {k: v for k, v in _dict(values.get("tiers")).items() if isinstance(v, dict)}
    models = {k: v for k, v in _dict(values.get("models")).items() if isinstance(v, dict) and not v.get("disabled")}
    out_tiers: List[Dict[str, Any]] = []
    for tname, tier in tiers.items():
        per_worker = tier_gpus(tier)
        max_workers = _int(tier.get("maxReplicas"), 1)
        rows = []
        gmin = gmax = gstart = 0.0
        for mname, m in models.items():
            if m.get("tier") != tname:
                continue
            lo, hi = replica_bounds(m)
            auto = _dict(_dict(m.get("deployment_config")).get("autoscaling_config"))
            initial = _int(auto.get("initial_replicas"), 0)
            g = gpus_per_replica(m)
            gmin += g * lo
            gmax += g * hi
            gstart += g * max(lo, initial)  # a new cluster starts Serve's apps at initial_replicas
            rows.append(
                {
                    "model": mname,
                    "model_id": _dict(m.get("model_loading_config")).get("model_id"),
                    "gpus_per_replica": g,
                    "min_replicas": lo,
                    "max_replicas": hi,
                    "initial_replicas": initial or None,
                    "gpus_at_min": g * lo,
                    "gpus_at_max": g * hi,
                    "fit": model_fit(m, tier),
                }
            )
        w_min = math.ceil(gmin / per_worker - 1e-9) if gmin else 0
        w_max = math.ceil(gmax / per_worker - 1e-9) if gmax else 0
        w_start = math.ceil(gstart / per_worker - 1e-9) if gstart else 0
        out_tiers.append(
            {
                "tier": tname,
                "disabled": bool(tier.get("disabled")),
                "accelerator": tier.get("acceleratorType"),
                "gpus_per_worker": per_worker,
                "min_workers": _int(tier.get("minReplicas"), 0),
                "max_workers": max_workers,
                "gpus_at_min": gmin,
                "gpus_at_max": gmax,
                "workers_needed_at_min": w_min,
                "workers_needed_at_max": w_max,
                "workers_needed_at_start": w_start,
                "capacity_ok_at_min": w_min <= max_workers,
                "capacity_ok_at_max": w_max <= max_workers,
                "models": rows,
            }
        )
    return {
        "tiers": out_tiers,
        "idle_floor": idle_floor(values, out_tiers),
        "model_cache": model_cache_disk(values),
        "assumptions": [
            "weights = parameters x bytes per parameter (fp32 4, bf16/fp16 2, fp8/int8 1, int4/awq/gptq 0.5)",
            "usable GPU memory = GPU GiB x gpu_memory_utilization (default 0.9) x tensor x pipeline parallel"
            " (x gpuShare)",
            "KV cache per token estimated as 0.5 MiB per 7B parameters (no architecture known; GQA models need less)",
            "workers needed = GPUs / gpusPerWorker, rounded up (fractional GPUs assumed to pack perfectly)",
            "model cache: weights on disk = parameters x bytes per parameter of the checkpoint (2 unless the "
            "engine_kwargs name a quantization), plus 10% for tokenizer and config files",
        ],
    }


_QUANTITY = re.compile(r"^([0-9.]+)([EPTGMK]i?|[eptgmk]|m)?$")
_UNITS = {
    "": 1,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": 1e-3,
}


def quantity_gib(text: Any) -> Optional[float]:
    """A Kubernetes storage quantity ("200Gi", "1T") in GiB; None when it cannot be read."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        return None
    return float(match.group(1)) * _UNITS.get(match.group(2) or "", 1) / 2**30


def model_cache_disk(values: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The disk the model cache needs: the checkpoints of the models that load from it, against
    the claim's size (None when the cache is off)."""
    from .rules import Context
    from .rules.serving import cache_source, uses_cache

    cache = _dict(values.get("modelCache"))
    if cache.get("enabled") is not True:
        return None
    ctx = Context(values)
    rows, total, unknown = [], 0.0, []
    for name, m in ctx.models().items():
        if not uses_cache(ctx, m):
            continue
        params, _src = infer_params_b(m)
        q = str(_dict(m.get("engine_kwargs")).get("quantization") or "").lower()
        bpp = BYTES_PER_PARAM.get(q, 2.0)
        gib = round(params * 1e9 * bpp * 1.1 / 2**30, 1) if params else None
        if gib is None:
            unknown.append(name)
        else:
            total += gib
        rows.append(
            {
                "model": name,
                "source": cache_source(m),
                "pre_pulled": m.get("cached") is True,
                "parameters_b": params,
                "disk_gib": gib,
            }
        )
    claim = cache.get("existingClaim") or ""
    size = None if claim else quantity_gib(cache.get("size", "200Gi"))
    return {
        "claim": f"claim {claim}" if claim else "claim made by the chart",
        "size_gib": None if size is None else round(size, 1),
        "needed_gib": round(total, 1),
        "models": rows,
        "unknown_size": unknown,
        "fits": None if size is None else total <= size,
    }


def idle_floor(values: Dict[str, Any], tiers: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What stays up with no traffic: GPU nodes (and their GPUs) held when every model sits at its
    min_replicas, and why; where the CPU-only replicas sit."""
    from .rules import Context
    from .rules.placement import cpu_only_replicas, cpu_only_target

    reasons: List[str] = []
    nodes = gpus = 0
    for t in tiers:
        if t["disabled"]:
            continue
        held = max(t["min_workers"], t["workers_needed_at_min"])
        if not held:
            continue
        nodes += held
        gpus += held * t["gpus_per_worker"]
        why = [f"{r['model']} min_replicas {r['min_replicas']}" for r in t["models"] if r["min_replicas"] > 0]
        if t["min_workers"] >= t["workers_needed_at_min"] and t["min_workers"]:
            why.insert(0, f"tier minReplicas {t['min_workers']}")
        reasons.append(
            f"tier {t['tier']}: {held} node(s) of {t['gpus_per_worker']} x {t['accelerator']} ({'; '.join(why)})"
        )
    ctx = Context(values)
    target, _cpus = cpu_only_target(ctx)
    unpinned = [p for p, asks, pinned in cpu_only_replicas(ctx) if not pinned and asks > 0]
    cpu_only = f"pinned to {target}: they hold no GPU node"
    if unpinned:
        cpu_only = (
            f"{len(unpinned)} CPU-only replica(s) set placement resources of their own and ask CPUs "
            "(ray-llm validate RL014 says where they can land)"
        )
    return {"gpu_nodes": nodes, "gpus": gpus, "reasons": reasons, "cpu_only_replicas": cpu_only}


def _fmt(x: Optional[float], unit: str = "") -> str:
    if x is None:
        return "?"
    return f"{x:g}{unit}" if isinstance(x, (int, float)) else str(x)


def render_plan_text(plan: Dict[str, Any]) -> str:
    lines: List[str] = []
    for t in plan["tiers"]:
        state = " (disabled)" if t["disabled"] else ""
        lines.append(
            f"tier {t['tier']}{state}: {t['accelerator']} x{t['gpus_per_worker']} per worker, "
            f"workers {t['min_workers']}..{t['max_workers']}"
        )
        lines.append(
            f"  GPUs needed: {t['gpus_at_min']:g} at min replicas, {t['gpus_at_max']:g} at max; "
            f"workers needed: {t['workers_needed_at_min']} at min, {t['workers_needed_at_max']} at max "
            f"(tier maxReplicas {t['max_workers']})"
            + ("" if t["capacity_ok_at_max"] else "  <-- over capacity at max")
            + ("" if t["capacity_ok_at_min"] else "  <-- can never schedule min replicas")
        )
        if not t["models"]:
            lines.append("  (no models)")
            lines.append("")
            continue
        header = (
            f"  {'model':<16} {'GPU/rep':>7} {'replicas':>9} {'params':>7} {'weights':>8} {'usable':>8} "
            f"{'KV left':>8} {'seqs@len':>12}  verdict"
        )
        lines.append(header)
        for r in t["models"]:
            f = r["fit"]
            seqs = f.get("sequences_at_max_model_len")
            mml = f.get("max_model_len")
            seq_txt = f"{seqs}@{mml}" if seqs is not None and mml else "-"
            lines.append(
                f"  {r['model']:<16} {r['gpus_per_replica']:>7g} "
                f"{str(r['min_replicas']) + '..' + str(r['max_replicas']):>9} "
                f"{_fmt(f['parameters_b'], 'B'):>7} {_fmt(f.get('weights_gib'), 'Gi'):>8} "
                f"{_fmt(f.get('usable_gib'), 'Gi'):>8} "
                f"{_fmt(f.get('kv_cache_gib'), 'Gi'):>8} {seq_txt:>12}  {f['verdict']}"
            )
        lines.append("")
    floor = plan["idle_floor"]
    lines.append(
        f"idle floor (no traffic, every model at its min_replicas): {floor['gpu_nodes']} GPU node(s), "
        f"{floor['gpus']} GPU(s)"
    )
    lines += [f"  - {r}" for r in floor["reasons"]] or ["  - every tier and every model scales to zero"]
    lines.append(f"  - CPU-only replicas (ingresses, CPU-engine models): {floor['cpu_only_replicas']}")
    lines.append("")
    cache = plan.get("model_cache")
    if cache:
        size = "?" if cache["size_gib"] is None else f"{cache['size_gib']:g} GiB"
        verdict = {True: "fits", False: "TOO SMALL", None: "size of the existing claim not known here"}[cache["fits"]]
        lines.append(f"model cache ({cache['claim']}, {size}): needs about {cache['needed_gib']:g} GiB: {verdict}")
        for r in cache["models"]:
            how = "pre-pulled" if r["pre_pulled"] else "placed on the volume by you"
            disk = "?" if r["disk_gib"] is None else f"{r['disk_gib']:g} GiB"
            lines.append(f"  - {r['model']}: {r['source']} ({how}): {disk}")
        if cache["unknown_size"]:
            lines.append(f"  - size unknown for {', '.join(cache['unknown_size'])}: set parameterCountBillions")
        lines.append("")
    lines.append("assumptions:")
    lines += [f"  - {a}" for a in plan["assumptions"]]
    return "\n".join(lines)
