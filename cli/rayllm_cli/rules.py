"""Cross-field rules over the merged values: one registry for ``validate`` and ``lint``.

Rules read the merged values as plain data (not the Pydantic models) so they
still run, and still point at the right path, when the schema check failed
somewhere else. Each rule yields :class:`ValuesFinding` objects.

Ids (stable; documented in ``ray-llm rules``):

=====  ==========================================================================
RL001  references: a model/custom app names a missing or disabled tier; a model names a missing/disabled llmApp
RL002  duplicates: model_id, app names across llmApps/customApps, route prefixes (and prefixes that shadow others)
RL003  placement: tensor x pipeline parallel above gpusPerWorker; accelerator_type other than the tier's; fractional gpuShare over-committing one worker
RL004  capacity: GPUs at max (and min) replicas above the tier's maxReplicas x gpusPerWorker
RL005  bounds: min_replicas > max_replicas, target_ongoing_requests > max_ongoing_requests, tier min > max
RL006  engine_kwargs keys vLLM does not know (did-you-mean), and vLLM engine args it renamed or removed
RL007  dtype bfloat16 on T4/V100; max_model_len above the model's context (known models only)
RL008  runtime_env working_dir / py_modules as local paths (RayService needs remote URIs)
RL009  inline secrets (token/secret/password/api_key... env values, strings that look like tokens)
RL010  custom app import_path not importable from the runtime packaging; args checked with APP_BUILDERS
RL011  image tag's Ray version differs from rayVersion
RL012  deprecated settings (old RayService thresholds, VLLM_USE_V1, RAY_SERVE_ENABLE_EXPERIMENTAL_STREAMING)
=====  ==========================================================================
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import ERROR, NOTICE, WARNING, RayLLMError, ValuesFinding, mask
from .merge import Merged, chart_dir, format_path

REPO = Path(__file__).resolve().parents[2]

# Env var names that carry a secret: a whole "_"-separated word (so
# TOKENIZERS_PARALLELISM passes) and not a pointer to one (HF_TOKEN_PATH,
# API_KEY_FILE pass: the value comes from a mounted Secret). The chart's
# _validate.tpl states the same two patterns; tests/cli/test_cli_agrees_with_helm.py
# keeps them in step.
SECRETISH_NAME = re.compile(r"(?i)(^|_)(token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?)(_|$)")
SECRET_POINTER_NAME = re.compile(r"(?i)_(path|file|dir|name)$")
# Keys inside builder args / engine_kwargs whose inline string value is a secret.
SECRETISH_KEY = re.compile(r"(?i)(token|secret|password|passwd|api_?keys?|access_?key|private_?key|credentials?)$")
TOKEN_PATTERNS = [
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "a Hugging Face token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an OpenAI-style API key"),
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), "a GitHub token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "a JSON Web Token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
]


def secretish_env_name(name: Any) -> bool:
    text = str(name)
    return bool(SECRETISH_NAME.search(text)) and not SECRET_POINTER_NAME.search(text)
ANY_TOKEN = re.compile("|".join(f"(?:{p.pattern})" for p, _ in TOKEN_PATTERNS))
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

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

# Environment variables that no longer do anything.
DEPRECATED_ENV = {
    "VLLM_USE_V1": "nothing: vLLM's V1 engine is the only engine; remove the variable",
    "RAY_SERVE_ENABLE_EXPERIMENTAL_STREAMING": "nothing: Ray Serve streams responses by default; remove the variable",
}

# Chart keys that were removed: schema "extra_forbidden" on these becomes a deprecation finding.
DEPRECATED_KEYS = {
    ("rayService", "serviceUnhealthySecondThreshold"): "rayService.upgradeStrategy (KubeRay >= 1.3 dropped the health thresholds; set upgradeStrategy: NewCluster or None)",
    ("rayService", "deploymentUnhealthySecondThreshold"): "rayService.upgradeStrategy (KubeRay >= 1.3 dropped the health thresholds; set upgradeStrategy: NewCluster or None)",
}


# --------------------------------------------------------------------------- context


@dataclass
class Context:
    values: Dict[str, Any]
    merged: Optional[Merged] = None

    def origin(self, path: Sequence[Any]) -> str:
        return self.merged.origin(path) if self.merged else ""

    def finding(self, rule: str, severity: str, path: Sequence[Any], message: str, value: Any = None,
                expected: str = "", fix: str = "") -> ValuesFinding:
        return ValuesFinding(rule, severity, format_path(path), message, value, expected, fix, self.origin(path))

    # ---- views of the data (defensive: the schema may have failed)
    def section(self, key: str) -> Dict[str, Any]:
        val = self.values.get(key)
        return val if isinstance(val, dict) else {}

    def tiers(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("tiers").items() if isinstance(v, dict)}

    def enabled_tiers(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.tiers().items() if not v.get("disabled")}

    def models(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("models").items() if isinstance(v, dict) and not v.get("disabled")}

    def custom_apps(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("customApps").items() if isinstance(v, dict) and not v.get("disabled")}

    def llm_apps(self) -> Dict[str, Dict[str, Any]]:
        return {k: v for k, v in self.section("llmApps").items() if isinstance(v, dict)}


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


# Numbers beyond 2^53 are already errors (Helm cannot keep them); the rules treat them as unset
# instead of overflowing float arithmetic (1e308 GPUs, a 400-digit --set value).
_SANE = 2 ** 53


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return value if abs(value) <= _SANE else default
    if isinstance(value, float) and value.is_integer() and abs(value) <= _SANE:
        return int(value)
    return default


def _num(value: Any, default: float) -> float:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)) and abs(value) <= _SANE:
        return float(value)
    return default


def parallel(model: Dict[str, Any]) -> Tuple[int, int]:
    ek = _dict(model.get("engine_kwargs"))
    return max(1, _int(ek.get("tensor_parallel_size"), 1)), max(1, _int(ek.get("pipeline_parallel_size"), 1))


def gpus_per_replica(model: Dict[str, Any]) -> float:
    tp, pp = parallel(model)
    share = _num(model.get("gpuShare"), 1.0)
    return tp * pp * (share if tp * pp == 1 else 1.0)


def replica_bounds(model: Dict[str, Any]) -> Tuple[int, int]:
    """(min, max) replicas as Ray Serve reads deployment_config (defaults 1/1; num_replicas when not autoscaling)."""
    dc = _dict(model.get("deployment_config"))
    auto = dc.get("autoscaling_config")
    num = dc.get("num_replicas")
    if isinstance(auto, dict):
        lo = _int(auto.get("min_replicas"), 1)
        hi = _int(auto.get("max_replicas"), max(1, lo))
        return lo, hi
    if num == "auto":
        return 1, 100
    n = _int(num, 1)
    return n, n


def tier_gpus(tier: Dict[str, Any]) -> int:
    return max(1, _int(tier.get("gpusPerWorker"), 1))


def normalise_prefix(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


# --------------------------------------------------------------------------- registry

RuleFn = Callable[[Context], Iterable[ValuesFinding]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    fn: RuleFn


RULES: List[Rule] = []


def rule(rule_id: str, title: str) -> Callable[[RuleFn], RuleFn]:
    def deco(fn: RuleFn) -> RuleFn:
        RULES.append(Rule(rule_id, title, fn))
        return fn
    return deco


def run_rules(ctx: Context, only: Optional[Sequence[str]] = None) -> List[ValuesFinding]:
    out: List[ValuesFinding] = []
    for r in RULES:
        if only and r.id not in only:
            continue
        try:
            out.extend(r.fn(ctx))
        except Exception as exc:  # a rule must never crash the CLI on odd input
            out.append(ValuesFinding(r.id, NOTICE, "", f"rule {r.id} could not run on these values: "
                                     f"{type(exc).__name__}: {exc}"))
    return out


# --------------------------------------------------------------------------- RL001


def _tier_ref_problem(ctx: Context, name: Any) -> Optional[str]:
    tiers = ctx.tiers()
    if not isinstance(name, str) or name not in tiers:
        return "missing"
    if tiers[name].get("disabled"):
        return "disabled"
    return None


def _walk(value: Any, path: Tuple[Any, ...]) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, path + (i,))


def _strings(value: Any) -> Iterator[Tuple[Tuple[Any, ...], str]]:
    """(path, string) for every string value, depth-first in document order (an explicit stack:
    no generator chain as deep as the values, which made every item cost O(depth))."""
    stack: List[Tuple[Tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, val = stack.pop()
        if isinstance(val, str):
            yield path, val
        elif isinstance(val, dict):
            stack.extend(reversed([(path + (k,), v) for k, v in val.items()]))
        elif isinstance(val, list):
            stack.extend(reversed([(path + (i,), v) for i, v in enumerate(val)]))


@rule("RL001", "models and custom apps name tiers and apps that exist and are enabled")
def rule_references(ctx: Context) -> Iterator[ValuesFinding]:
    enabled_tiers = sorted(ctx.enabled_tiers())
    for name, m in ctx.models().items():
        problem = _tier_ref_problem(ctx, m.get("tier"))
        if problem:
            yield ctx.finding(
                "RL001", ERROR, ("models", name, "tier"),
                f"model {name!r} names a {problem} tier", m.get("tier"),
                f"one of the enabled tiers {enabled_tiers}",
                "add the tier under `tiers`" if problem == "missing" else "remove `disabled: true` from the tier, or pick another tier")
        apps = ctx.llm_apps()
        app = m.get("app")
        enabled_apps = sorted(k for k, v in apps.items() if not v.get("disabled"))
        if not isinstance(app, str) or app not in apps or apps[app].get("disabled"):
            kind = "disabled" if isinstance(app, str) and app in apps else "missing"
            yield ctx.finding(
                "RL001", ERROR, ("models", name, "app"), f"model {name!r} names a {kind} llmApps entry", app,
                f"one of the enabled llmApps {enabled_apps}",
                f"add `llmApps.{app}: {{routePrefix: /{app}}}`" if kind == "missing" else "enable the app or pick another")
    for name, a in ctx.custom_apps().items():
        for path, val in _walk(_dict(a.get("args")), ("customApps", name, "args")):
            if path[-1] == "tier" and isinstance(val, str):
                problem = _tier_ref_problem(ctx, val)
                if problem:
                    yield ctx.finding("RL001", ERROR, path, f"custom app {name!r} names a {problem} tier", val,
                                      f"one of the enabled tiers {enabled_tiers}", "add/enable the tier or pick another")


# --------------------------------------------------------------------------- RL002


@rule("RL002", "model ids, app names and route prefixes are unique and do not shadow each other")
def rule_duplicates(ctx: Context) -> Iterator[ValuesFinding]:
    seen: Dict[str, str] = {}
    for name, m in ctx.models().items():
        mid = _dict(m.get("model_loading_config")).get("model_id")
        if not isinstance(mid, str):
            continue
        if mid in seen:
            yield ctx.finding("RL002", ERROR, ("models", name, "model_loading_config", "model_id"),
                              f"model_id is also used by models.{seen[mid]}", mid,
                              "a unique model_id per model (clients select models by it)",
                              "rename one model_id")
        else:
            seen[mid] = name
    llm = ctx.llm_apps()
    for name in ctx.section("customApps"):
        if name in llm:
            yield ctx.finding("RL002", ERROR, ("customApps", name), f"app name {name!r} is used by llmApps and customApps",
                              name, "unique Serve application names", "rename the custom app")
    prefixes: List[Tuple[str, Tuple[Any, ...]]] = []
    for name, a in llm.items():
        if not a.get("disabled") and isinstance(a.get("routePrefix"), str):
            prefixes.append((normalise_prefix(a["routePrefix"]), ("llmApps", name, "routePrefix")))
    for name, a in ctx.custom_apps().items():
        if isinstance(a.get("route_prefix"), str):
            prefixes.append((normalise_prefix(a["route_prefix"]), ("customApps", name, "route_prefix")))
    shadow: Dict[Tuple[Any, ...], List[str]] = {}
    for i, (p, path) in enumerate(prefixes):
        for q, other in prefixes[:i]:
            if p == q:
                yield ctx.finding("RL002", ERROR, path, f"route prefix is also used by {format_path(other)}", p,
                                  "a unique route_prefix per application", "change one of the prefixes")
            elif p == "/" or q == "/":
                root, rest = (path, other) if p == "/" else (other, path)
                shadow.setdefault(root, []).append(format_path(rest))
            elif p.startswith(q + "/") or q.startswith(p + "/"):
                short, long_ = (path, other) if q.startswith(p + "/") else (other, path)
                sp, lp = (p, q) if q.startswith(p + "/") else (q, p)
                yield ctx.finding("RL002", WARNING, long_,
                                  f"route prefix {lp} is nested under {sp} ({format_path(short)}); "
                                  f"requests to {lp}/... go to this app, the rest of {sp}/... to the other", lp,
                                  "non-nested prefixes", "use sibling prefixes (e.g. /a and /b)")
    for root, rest in shadow.items():
        yield ctx.finding("RL002", WARNING, root,
                          f"route prefix '/' catches every path not matched by a longer prefix "
                          f"({', '.join(rest)}); typos there silently reach this app", "/",
                          "distinct prefixes", "give this app its own prefix (e.g. /chat) unless a catch-all is intended")


# --------------------------------------------------------------------------- RL003 / RL004


@rule("RL003", "engine parallelism and GPU shares fit the tier's workers")
def rule_placement(ctx: Context) -> Iterator[ValuesFinding]:
    tiers = ctx.enabled_tiers()
    fractional: Dict[str, List[Tuple[str, float]]] = {}
    for name, m in ctx.models().items():
        tier = tiers.get(m.get("tier")) if isinstance(m.get("tier"), str) else None
        if tier is None:
            continue
        tp, pp = parallel(m)
        per_worker = tier_gpus(tier)
        if tp * pp > per_worker:
            key = "tensor_parallel_size" if "tensor_parallel_size" in _dict(m.get("engine_kwargs")) else "pipeline_parallel_size"
            yield ctx.finding("RL003", ERROR, ("models", name, "engine_kwargs", key),
                              f"tensor_parallel_size x pipeline_parallel_size = {tp}x{pp} = {tp * pp} GPUs per engine, "
                              f"but tier {m['tier']!r} has {per_worker} GPU(s) per worker (an engine's bundles must fit one worker)",
                              tp * pp, f"at most {per_worker}",
                              "move the model to a tier with more gpusPerWorker or lower the parallel sizes")
        own = m.get("accelerator_type")
        if own is not None and str(own) != str(tier.get("acceleratorType")):
            # The chart derives accelerator_type from the tier; a different one
            # could never be placed on that tier's workers (the template fails too).
            yield ctx.finding("RL003", ERROR, ("models", name, "accelerator_type"),
                              f"accelerator_type {own!r} differs from tier {m['tier']!r}'s acceleratorType",
                              own, f"tier {m['tier']!r}'s {tier.get('acceleratorType')!r} (or unset)",
                              "remove it: the chart sets it from the tier")
        share = _num(m.get("gpuShare"), 1.0)
        if share < 1 and tp * pp == 1:
            lo, _ = replica_bounds(m)
            fractional.setdefault(m["tier"], []).append((name, share * lo))
    for tname, items in fractional.items():
        tier = tiers[tname]
        total = sum(x for _, x in items)
        # Fractional engines share GPUs only within one worker: with maxReplicas <= 1 they must all co-locate.
        if _int(tier.get("maxReplicas"), 1) <= 1 and total > tier_gpus(tier) + 1e-9:
            names = ", ".join(f"{n} ({x:g})" for n, x in items)
            yield ctx.finding("RL003", ERROR, ("tiers", tname, "gpusPerWorker"),
                              f"fractional models must co-locate on tier {tname!r}'s single worker and need "
                              f"{total:g} GPUs at min replicas ({names})", total,
                              f"sum of gpuShare x min_replicas <= gpusPerWorker ({tier_gpus(tier)})",
                              "lower gpuShare/min_replicas, raise gpusPerWorker or maxReplicas, or move a model")


@rule("RL004", "the tier's GPUs cover its models at min and max replicas")
def rule_capacity(ctx: Context) -> Iterator[ValuesFinding]:
    tiers = ctx.enabled_tiers()
    per_tier: Dict[str, List[Tuple[str, float, int, int]]] = {}
    for name, m in ctx.models().items():
        if isinstance(m.get("tier"), str) and m["tier"] in tiers:
            lo, hi = replica_bounds(m)
            per_tier.setdefault(m["tier"], []).append((name, gpus_per_replica(m), lo, hi))
    for tname, items in per_tier.items():
        tier = tiers[tname]
        capacity = _int(tier.get("maxReplicas"), 1) * tier_gpus(tier)
        at_min = sum(g * lo for _, g, lo, _ in items)
        at_max = sum(g * hi for _, g, _, hi in items)
        detail = ", ".join(f"{n}: {g:g} GPU x {lo}..{hi}" for n, g, lo, hi in items)
        if at_min > capacity + 1e-9:
            yield ctx.finding("RL004", ERROR, ("tiers", tname, "maxReplicas"),
                              f"models need {at_min:g} GPUs at their min_replicas but tier {tname!r} has at most "
                              f"{capacity} (maxReplicas x gpusPerWorker); these replicas can never all be scheduled ({detail})",
                              tier.get("maxReplicas"), f"maxReplicas x gpusPerWorker >= {at_min:g}",
                              "raise the tier's maxReplicas/gpusPerWorker or lower the models' min_replicas")
        elif at_max > capacity + 1e-9:
            yield ctx.finding("RL004", ERROR, ("tiers", tname, "maxReplicas"),
                              f"models may scale to {at_max:g} GPUs at max_replicas but tier {tname!r} has at most "
                              f"{capacity} (maxReplicas x gpusPerWorker); replicas above that stay pending ({detail})",
                              tier.get("maxReplicas"), f"maxReplicas x gpusPerWorker >= {at_max:g}",
                              "raise the tier's maxReplicas or lower the models' max_replicas")


# --------------------------------------------------------------------------- RL005


@rule("RL005", "replica and request bounds are ordered")
def rule_bounds(ctx: Context) -> Iterator[ValuesFinding]:
    for tname, t in ctx.tiers().items():
        lo, hi = t.get("minReplicas"), t.get("maxReplicas")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield ctx.finding("RL005", ERROR, ("tiers", tname, "minReplicas"), f"minReplicas {lo} > maxReplicas {hi}",
                              lo, f"<= maxReplicas ({hi})", "lower minReplicas or raise maxReplicas")
    for name, m in ctx.models().items():
        dc = _dict(m.get("deployment_config"))
        auto = _dict(dc.get("autoscaling_config"))
        base = ("models", name, "deployment_config")
        lo, hi, init = auto.get("min_replicas"), auto.get("max_replicas"), auto.get("initial_replicas")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield ctx.finding("RL005", ERROR, base + ("autoscaling_config", "min_replicas"),
                              f"min_replicas {lo} > max_replicas {hi}", lo, f"<= max_replicas ({hi})",
                              "lower min_replicas or raise max_replicas")
        if isinstance(init, int) and isinstance(lo, int) and isinstance(hi, int) and not lo <= init <= hi:
            yield ctx.finding("RL005", ERROR, base + ("autoscaling_config", "initial_replicas"),
                              f"initial_replicas {init} outside [{lo}, {hi}]", init, f"between {lo} and {hi}",
                              "fix initial_replicas or remove it")
        target, mor = auto.get("target_ongoing_requests"), dc.get("max_ongoing_requests")
        if isinstance(target, (int, float)) and isinstance(mor, (int, float)) and target > mor:
            yield ctx.finding("RL005", ERROR, base + ("autoscaling_config", "target_ongoing_requests"),
                              f"target_ongoing_requests {target} > max_ongoing_requests {mor}: replicas never see "
                              "that many requests, so the autoscaler never scales up", target, f"<= {mor}",
                              "lower target_ongoing_requests or raise max_ongoing_requests")


# --------------------------------------------------------------------------- RL006


@functools.lru_cache(maxsize=1)
def shipped_engine_args() -> Tuple[str, frozenset]:
    data = json.loads((Path(__file__).with_name("vllm_engine_args.json")).read_text())
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
def rule_engine_kwargs(ctx: Context) -> Iterator[ValuesFinding]:
    for name, m in ctx.models().items():
        ek = _dict(m.get("engine_kwargs"))
        if not ek:
            continue
        source, known = known_engine_args(ek)
        for key in ek:
            path = ("models", name, "engine_kwargs", key)
            if key in VLLM_RENAMED and key not in known:
                yield ctx.finding("RL012", WARNING, path, f"vLLM engine arg {key!r} was removed or renamed",
                                  ek[key], VLLM_RENAMED[key], VLLM_RENAMED[key])
                continue
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.7)
                fix = f"did you mean {' / '.join(close)}?" if close else "remove it or check vLLM's engine arguments"
                yield ctx.finding("RL006", ERROR, path, f"{key!r} is not an engine argument of {source}",
                                  ek[key], "a vLLM EngineArgs field", fix)


# --------------------------------------------------------------------------- RL007


def _model_source(m: Dict[str, Any]) -> Optional[str]:
    mlc = _dict(m.get("model_loading_config"))
    src = mlc.get("model_source")
    if isinstance(src, str):
        return src
    if isinstance(src, dict):
        return None
    return mlc.get("model_id") if isinstance(mlc.get("model_id"), str) else None


@rule("RL007", "dtype and max_model_len suit the GPU and the model")
def rule_dtype(ctx: Context) -> Iterator[ValuesFinding]:
    tiers = ctx.tiers()
    for name, m in ctx.models().items():
        ek = _dict(m.get("engine_kwargs"))
        tier = tiers.get(m.get("tier")) if isinstance(m.get("tier"), str) else None
        dtype = str(ek.get("dtype", "")).lower()
        accel = str(_dict(tier).get("acceleratorType", "")).upper()
        if tier and dtype in ("bfloat16", "bf16") and accel in NO_BF16:
            yield ctx.finding("RL007", ERROR, ("models", name, "engine_kwargs", "dtype"),
                              f"{accel} GPUs (tier {m['tier']!r}) have no bfloat16 support; vLLM refuses to start",
                              ek.get("dtype"), "float16 (or half) on T4/V100", "set engine_kwargs.dtype: float16")
        src = _model_source(m)
        limit = MODEL_CONTEXT.get(src.lower()) if src else None
        mml = ek.get("max_model_len")
        if limit and isinstance(mml, int) and not isinstance(mml, bool) and mml > limit:
            yield ctx.finding("RL007", ERROR, ("models", name, "engine_kwargs", "max_model_len"),
                              f"{src} declares a context of {limit} tokens; vLLM rejects a larger max_model_len",
                              mml, f"<= {limit}", f"set max_model_len to {limit} or less")


# --------------------------------------------------------------------------- RL008


def _runtime_envs(ctx: Context) -> Iterator[Tuple[Tuple[Any, ...], Dict[str, Any]]]:
    for name, m in ctx.models().items():
        yield ("models", name, "runtime_env"), _dict(m.get("runtime_env"))
    for name, a in ctx.custom_apps().items():
        yield ("customApps", name, "runtime_env"), _dict(a.get("runtime_env"))


@rule("RL008", "runtime_env working_dir / py_modules are remote URIs")
def rule_remote_uris(ctx: Context) -> Iterator[ValuesFinding]:
    for base, env in _runtime_envs(ctx):
        items: List[Tuple[Tuple[Any, ...], Any]] = []
        if "working_dir" in env:
            items.append((base + ("working_dir",), env["working_dir"]))
        mods = env.get("py_modules")
        if isinstance(mods, list):
            items += [(base + ("py_modules", i), v) for i, v in enumerate(mods)]
        for path, val in items:
            if isinstance(val, str) and not URI_SCHEME.match(val):
                yield ctx.finding("RL008", ERROR, path,
                                  "a local path: the RayService's pods cannot see files on your machine and the "
                                  "KubeRay operator does not upload them, so the app fails to deploy",
                                  val, "a remote URI (s3://, gs://, https://.../x.zip)",
                                  "zip the code to object storage and reference it by URI, bake it into the image, "
                                  "or (for rayllm_runtime) keep runtimePackaging.mode: configMap")


# --------------------------------------------------------------------------- RL009


def _env_list(ctx: Context) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    head = ctx.section("head")
    if isinstance(head.get("env"), list):
        for i, e in enumerate(head["env"]):
            yield ("head", "env", i), e
    for tname, t in ctx.tiers().items():
        if isinstance(t.get("env"), list):
            for i, e in enumerate(t["env"]):
                yield ("tiers", tname, "env", i), e


@rule("RL009", "no secrets written inline in values")
def rule_secrets(ctx: Context) -> Iterator[ValuesFinding]:
    flagged = set()
    for base, env in _runtime_envs(ctx):
        for k, v in _dict(env.get("env_vars")).items():
            if secretish_env_name(k) and v not in (None, ""):
                path = base + ("env_vars", k)
                flagged.add(path)
                yield ctx.finding("RL009", ERROR, path, f"env var {k} carries an inline secret value", mask(v),
                                  "secrets only through a Kubernetes Secret",
                                  "remove it; use huggingFaceToken.secretName, secretMounts, or tier/head env "
                                  "with valueFrom.secretKeyRef")
    for path, e in _env_list(ctx):
        if isinstance(e, dict) and "value" in e and secretish_env_name(e.get("name", "")) and e["value"] not in (None, ""):
            flagged.add(path + ("value",))
            yield ctx.finding("RL009", ERROR, path + ("value",), f"env var {e.get('name')} has an inline value",
                              mask(e["value"]), "valueFrom.secretKeyRef", "reference a Secret instead of `value:`")
    # What the chart copies verbatim into serveConfigV2 / the model files: a
    # secret-named key with an inline string (or list of strings) is a leak.
    copied = [(("models", n, "engine_kwargs"), m.get("engine_kwargs")) for n, m in ctx.models().items()]
    copied += [(("customApps", n, "args"), a.get("args")) for n, a in ctx.custom_apps().items()]
    for base_path, tree in copied:
        for path, val in _walk(tree, base_path):
            key = path[-1] if len(path) > len(base_path) else None
            inline = (isinstance(val, str) and val != "") or (isinstance(val, list) and val and isinstance(val[0], str))
            if inline and isinstance(key, str) and SECRETISH_KEY.search(key):
                flagged.add(path)
                yield ctx.finding("RL009", ERROR, path, f"key {key!r} holds an inline secret", mask(val),
                                  "secrets only through a Kubernetes Secret",
                                  "mount the Secret with secretMounts and pass its path (e.g. auth.api_keys_path), "
                                  "or use huggingFaceToken.secretName for the Hugging Face token")
    for path, val in _strings(ctx.values):
        if path in flagged or not ANY_TOKEN.search(val):  # one scan per string; which pattern only on a hit
            continue
        for pattern, what in TOKEN_PATTERNS:
            if pattern.search(val):
                yield ctx.finding("RL009", ERROR, path, f"this value looks like {what}", mask(val),
                                  "no credentials in values (they end up in ConfigMaps, the RayService and Helm's release secret)",
                                  "store it in a Kubernetes Secret and reference it (huggingFaceToken, secretMounts, valueFrom.secretKeyRef); "
                                  "rotate the leaked credential")
                break


# --------------------------------------------------------------------------- RL010


def _module_file(root: Path, module: str) -> Optional[Path]:
    parts = module.split(".")
    base = root.joinpath(*parts[1:]) if len(parts) > 1 else root
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _top_level_names(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def runtime_roots(mode: str) -> List[Tuple[str, Path]]:
    try:
        packed: Optional[Path] = chart_dir() / "files" / "rayllm_runtime"
    except RayLLMError:  # no chart here: only the runtime sources can be checked
        packed = None
    source = REPO / "runtime" / "rayllm_runtime"
    roots = [("the chart's packed runtime (charts/ray-llm/files)", packed), ("runtime/", source)]
    if mode == "image":
        roots.reverse()
    return [(label, p) for label, p in roots if p is not None and p.is_dir()]


@functools.lru_cache(maxsize=1)
def app_builders() -> Optional[Dict[str, Any]]:
    """The runtime's builder registry (``rayllm_runtime.config.APP_ARGS_MODELS``, Ray-free); None if absent."""
    try:
        src = str(REPO / "runtime")
        if importlib.util.find_spec("rayllm_runtime") is None and os.path.isdir(src):
            sys.path.append(src)
        import contextlib

        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
        with contextlib.redirect_stdout(sys.stderr):
            from rayllm_runtime.config import APP_ARGS_MODELS  # type: ignore

        return dict(APP_ARGS_MODELS)
    except Exception:
        return None


@rule("RL010", "custom app import_path is importable and its args validate")
def rule_import_path(ctx: Context) -> Iterator[ValuesFinding]:
    mode = str(ctx.section("runtimePackaging").get("mode", "configMap"))
    for name, a in ctx.custom_apps().items():
        ip = a.get("import_path")
        if not isinstance(ip, str) or not ip:
            continue
        path = ("customApps", name, "import_path")
        module, sep, attr = ip.partition(":")
        if not sep:
            module, _, attr = ip.rpartition(".")
        if module.split(".")[0] != "rayllm_runtime":
            env = _dict(a.get("runtime_env"))
            if not env.get("working_dir") and not env.get("py_modules"):
                yield ctx.finding("RL010", WARNING, path,
                                  f"module {module!r} is not part of rayllm_runtime: the chart does not ship it",
                                  ip, "a module in the image or in a remote runtime_env (working_dir / py_modules)",
                                  "make sure the image contains it, or set runtime_env.working_dir to a remote zip")
            continue
        roots = runtime_roots(mode)
        if not roots:
            continue
        label, root = roots[0]
        mfile = _module_file(root, module)
        if mfile is None:
            other = next(((lb, _module_file(r, module)) for lb, r in roots[1:] if _module_file(r, module)), None)
            if other is None:
                yield ctx.finding("RL010", ERROR, path, f"module {module!r} does not exist in {label}", ip,
                                  "an existing rayllm_runtime module",
                                  "fix the import_path (e.g. rayllm_runtime.apps:build_gateway)")
                continue
            # present in the other copy: the packed copy is stale (CI's `ray-llm pack-runtime --check` fails too)
            yield ctx.finding("RL010", WARNING, path, f"module {module!r} is in {other[0]} but not in {label}", ip,
                              "the chart's runtime copy in sync with runtime/",
                              "run `ray-llm pack-runtime`" if mode != "image" else "rebuild the image")
            label, mfile = other
        try:
            names = _top_level_names(mfile)
        except (SyntaxError, OSError, UnicodeDecodeError):
            continue
        if attr not in names:
            close = difflib.get_close_matches(attr, sorted(n for n in names if not n.startswith("_")), n=3)
            yield ctx.finding("RL010", ERROR, path, f"{module} has no attribute {attr!r} ({label})", ip,
                              "a builder defined in that module",
                              f"did you mean {module}:{close[0]}?" if close else "fix the builder name")
            continue
        builders = app_builders()
        if builders is None:
            yield ctx.finding("RL010", NOTICE, ("customApps", name, "args"),
                              "args not checked: rayllm_runtime.apps.APP_BUILDERS could not be imported (needs ray[serve])")
            continue
        model = builders.get(ip) or builders.get(ip.replace(".", ":", 0))
        if model is None:
            continue
        from pydantic import ValidationError

        try:
            model.model_validate(rendered_gateway_args(ctx, name, _dict(a.get("args"))) if ip == GATEWAY_BUILDER
                                 else _dict(a.get("args")))
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err.get("loc", ()))
                fpath = ("customApps", name, "args") + loc
                msg = err.get("msg", "").removeprefix("Value error, ")
                yield ctx.finding("RL010", ERROR, fpath, f"args rejected by {model.__name__}: {msg}",
                                  _redact(_get(ctx.values, fpath), fpath), err.get("type", ""),
                                  "fix the argument (see the builder's args model in rayllm_runtime)")


GATEWAY_BUILDER = "rayllm_runtime.apps:build_gateway"


def rendered_gateway_args(ctx: Context, app_name: str, args: Dict[str, Any]) -> Dict[str, Any]:
    """A gateway app's args as the chart renders them: plus one `app` upstream per model of every
    llmApps entry that names this gateway (ray-llm.serve.config). Placement is left out: it is
    the chart's, not the user's, and always valid."""
    derived = [{"app": f"{app}.{model_name}", "model_ids": [_dict(m.get("model_loading_config")).get("model_id")]}
               for model_name, m in ctx.models().items()
               for app in [m.get("app")]
               if isinstance(app, str) and _dict(ctx.llm_apps().get(app)).get("gateway") == app_name
               and not _dict(ctx.llm_apps().get(app)).get("disabled")]
    if not derived:
        return args
    upstreams = args.get("upstreams")
    return {**args, "upstreams": (list(upstreams) if isinstance(upstreams, list) else []) + derived}


def _get(data: Any, path: Sequence[Any]) -> Any:
    cur = data
    for p in path:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            cur = cur[p]
        else:
            return None
    return cur


def _redact(value: Any, path: Sequence[Any]) -> Any:
    if any(isinstance(p, str) and SECRETISH_NAME.search(p) for p in path) and isinstance(value, (str, int, float)):
        return mask(value)
    if isinstance(value, str) and any(p.search(value) for p, _ in TOKEN_PATTERNS):
        return mask(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        if len(text) > 120:
            return text[:117] + "..."
        return value
    return value


# --------------------------------------------------------------------------- RL011


@rule("RL011", "image tag and rayVersion name the same Ray release")
def rule_image_version(ctx: Context) -> Iterator[ValuesFinding]:
    tag = str(ctx.section("image").get("tag", ""))
    ray_version = str(ctx.values.get("rayVersion", ""))
    m = re.match(r"^v?([0-9]+\.[0-9]+\.[0-9]+)", tag)
    if m and ray_version and m.group(1) != ray_version:
        yield ctx.finding("RL011", ERROR, ("image", "tag"),
                          f"the image carries Ray {m.group(1)} but rayVersion is {ray_version}; KubeRay and the "
                          "autoscaler then speak the wrong Ray protocol", tag, f"a tag starting with {ray_version}",
                          "set image.tag and rayVersion to the same Ray release")


# --------------------------------------------------------------------------- RL012


@rule("RL012", "deprecated settings")
def rule_deprecated(ctx: Context) -> Iterator[ValuesFinding]:
    for base, env in _runtime_envs(ctx):
        for k, v in _dict(env.get("env_vars")).items():
            if k in DEPRECATED_ENV:
                yield ctx.finding("RL012", WARNING, base + ("env_vars", k), f"{k} is deprecated and ignored", v,
                                  DEPRECATED_ENV[k], "remove it")
    for path, e in _env_list(ctx):
        if isinstance(e, dict) and e.get("name") in DEPRECATED_ENV:
            yield ctx.finding("RL012", WARNING, path, f"{e['name']} is deprecated and ignored", e.get("value"),
                              DEPRECATED_ENV[e["name"]], "remove it")


def deprecated_key_finding(ctx: Context, path: Tuple[Any, ...]) -> Optional[ValuesFinding]:
    """A schema ``extra_forbidden`` on a removed chart key -> a deprecation finding naming the replacement."""
    repl = DEPRECATED_KEYS.get(tuple(path))
    if not repl:
        return None
    # An error, not a warning: values.schema.json forbids unknown keys, so helm
    # itself refuses these values; validate must not call them valid.
    return ctx.finding("RL012", ERROR, path, f"{path[-1]} was removed from the chart and helm rejects it",
                       _get(ctx.values, path), repl, f"remove it; use {repl.split(' ')[0]}")
