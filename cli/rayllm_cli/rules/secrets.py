"""RL009: no secret is written inline in values (they would land in ConfigMaps, serveConfigV2
and Helm's release Secret); the patterns are rayllm_schemas.secret_patterns, shared with the chart."""

from __future__ import annotations

import re
from typing import Any, Iterator, Tuple

from rayllm_schemas.secret_patterns import SECRETISH_KEY

from ..errors import ERROR, Finding, mask
from .context import ANY_TOKEN, TOKEN_PATTERNS, Context, as_dict, secretish_env_name, strings, walk
from .registry import rule
from .runtime_env import runtime_envs

SECRETISH_KEY_RE = re.compile(SECRETISH_KEY)


def env_list(ctx: Context) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    head = ctx.section("head")
    if isinstance(head.get("env"), list):
        for i, e in enumerate(head["env"]):
            yield ("head", "env", i), e
    for tname, t in ctx.tiers().items():
        if isinstance(t.get("env"), list):
            for i, e in enumerate(t["env"]):
                yield ("tiers", tname, "env", i), e
    system = ctx.section("systemGroup")
    if isinstance(system.get("env"), list):
        for i, e in enumerate(system["env"]):
            yield ("systemGroup", "env", i), e


@rule("RL009", "no secrets written inline in values", in_template=True)
def rule_secrets(ctx: Context) -> Iterator[Finding]:
    flagged = set()
    for base, env in runtime_envs(ctx):
        for k, v in as_dict(env.get("env_vars")).items():
            if secretish_env_name(k) and v not in (None, ""):
                path = base + ("env_vars", k)
                flagged.add(path)
                yield ctx.finding(
                    "RL009",
                    ERROR,
                    path,
                    f"env var {k} carries an inline secret value",
                    mask(v),
                    "secrets only through a Kubernetes Secret",
                    "remove it; use huggingFaceToken.secretName, secretMounts, or tier/head env "
                    "with valueFrom.secretKeyRef",
                )
    for path, e in env_list(ctx):
        if (
            isinstance(e, dict)
            and "value" in e
            and secretish_env_name(e.get("name", ""))
            and e["value"] not in (None, "")
        ):
            flagged.add(path + ("value",))
            yield ctx.finding(
                "RL009",
                ERROR,
                path + ("value",),
                f"env var {e.get('name')} has an inline value",
                mask(e["value"]),
                "valueFrom.secretKeyRef",
                "reference a Secret instead of `value:`",
            )
    # What the chart copies verbatim into serveConfigV2 / the model files: a
    # secret-named key with an inline string (or list of strings) is a leak.
    copied = [(("models", n, "engine_kwargs"), m.get("engine_kwargs")) for n, m in ctx.models().items()]
    copied += [(("customApps", n, "args"), a.get("args")) for n, a in ctx.custom_apps().items()]
    for base_path, tree in copied:
        for path, val in walk(tree, base_path):
            key = path[-1] if len(path) > len(base_path) else None
            inline = (isinstance(val, str) and val != "") or (isinstance(val, list) and val and isinstance(val[0], str))
            if inline and isinstance(key, str) and SECRETISH_KEY_RE.search(key):
                flagged.add(path)
                yield ctx.finding(
                    "RL009",
                    ERROR,
                    path,
                    f"key {key!r} holds an inline secret",
                    mask(val),
                    "secrets only through a Kubernetes Secret",
                    "mount the Secret with secretMounts and pass its path (e.g. auth.api_keys_path), "
                    "or use huggingFaceToken.secretName for the Hugging Face token",
                )
    for path, val in strings(ctx.values):
        if path in flagged or not ANY_TOKEN.search(val):  # one scan per string; which pattern only on a hit
            continue
        for pattern, what in TOKEN_PATTERNS:
            if pattern.search(val):
                yield ctx.finding(
                    "RL009",
                    ERROR,
                    path,
                    f"this value looks like {what}",
                    mask(val),
                    "no credentials in values (they end up in ConfigMaps, the RayService and Helm's release secret)",
                    "store it in a Kubernetes Secret and reference it (huggingFaceToken, secretMounts, "
                    "valueFrom.secretKeyRef); rotate the leaked credential",
                )
                break
