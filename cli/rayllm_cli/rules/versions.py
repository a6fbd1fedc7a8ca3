"""Versions and what changed between them.

RL011: the image tag and rayVersion name the same Ray release.
RL012: deprecated settings (removed chart keys, dead env vars, renamed vLLM args).
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional, Tuple

from ..errors import ERROR, WARNING, Finding
from .context import Context, as_dict, get
from .registry import rule
from .runtime_env import runtime_envs
from .secrets import env_list

# Environment variables that no longer do anything.
DEPRECATED_ENV = {
    "VLLM_USE_V1": "nothing: vLLM's V1 engine is the only engine; remove the variable",
    "RAY_SERVE_ENABLE_EXPERIMENTAL_STREAMING": "nothing: Ray Serve streams responses by default; remove the variable",
}

# Chart keys that were removed: schema "extra_forbidden" on these becomes a deprecation finding.
_UPGRADE_STRATEGY_INSTEAD = (
    "rayService.upgradeStrategy (KubeRay >= 1.3 dropped the health thresholds; set upgradeStrategy: NewCluster or None)"
)
DEPRECATED_KEYS = {
    ("rayService", "serviceUnhealthySecondThreshold"): _UPGRADE_STRATEGY_INSTEAD,
    ("rayService", "deploymentUnhealthySecondThreshold"): _UPGRADE_STRATEGY_INSTEAD,
}


@rule("RL011", "image tag and rayVersion name the same Ray release", in_template=True)
def rule_image_version(ctx: Context) -> Iterator[Finding]:
    tag = str(ctx.section("image").get("tag", ""))
    ray_version = str(ctx.values.get("rayVersion", ""))
    m = re.match(r"^v?([0-9]+\.[0-9]+\.[0-9]+)", tag)
    if m and ray_version and m.group(1) != ray_version:
        yield ctx.finding(
            "RL011",
            ERROR,
            ("image", "tag"),
            f"the image carries Ray {m.group(1)} but rayVersion is {ray_version}; KubeRay and the "
            "autoscaler then speak the wrong Ray protocol",
            tag,
            f"a tag starting with {ray_version}",
            "set image.tag and rayVersion to the same Ray release",
        )


@rule("RL012", "deprecated settings")
def rule_deprecated(ctx: Context) -> Iterator[Finding]:
    for base, env in runtime_envs(ctx):
        for k, v in as_dict(env.get("env_vars")).items():
            if k in DEPRECATED_ENV:
                yield ctx.finding(
                    "RL012",
                    WARNING,
                    base + ("env_vars", k),
                    f"{k} is deprecated and ignored",
                    v,
                    DEPRECATED_ENV[k],
                    "remove it",
                )
    for path, e in env_list(ctx):
        if isinstance(e, dict) and e.get("name") in DEPRECATED_ENV:
            yield ctx.finding(
                "RL012",
                WARNING,
                path,
                f"{e['name']} is deprecated and ignored",
                e.get("value"),
                DEPRECATED_ENV[e["name"]],
                "remove it",
            )


def deprecated_key_finding(ctx: Context, path: Tuple[Any, ...]) -> Optional[Finding]:
    """A schema ``extra_forbidden`` on a removed chart key -> a deprecation finding naming the replacement."""
    repl = DEPRECATED_KEYS.get(tuple(path))
    if not repl:
        return None
    # An error, not a warning: values.schema.json forbids unknown keys, so helm
    # itself refuses these values; validate must not call them valid.
    return ctx.finding(
        "RL012",
        ERROR,
        path,
        f"{path[-1]} was removed from the chart and helm rejects it",
        get(ctx.values, path),
        repl,
        f"remove it; use {repl.split(' ')[0]}",
    )
