"""RL008: runtime_env working_dir / py_modules are remote URIs (the pods cannot see local paths)."""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Tuple

from ..errors import ERROR, Finding
from .context import Context, as_dict
from .registry import rule

URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def runtime_envs(ctx: Context) -> Iterator[Tuple[Tuple[Any, ...], Dict[str, Any]]]:
    for name, m in ctx.models().items():
        yield ("models", name, "runtime_env"), as_dict(m.get("runtime_env"))
    for name, a in ctx.custom_apps().items():
        yield ("customApps", name, "runtime_env"), as_dict(a.get("runtime_env"))


@rule("RL008", "runtime_env working_dir / py_modules are remote URIs")
def rule_remote_uris(ctx: Context) -> Iterator[Finding]:
    for base, env in runtime_envs(ctx):
        items: List[Tuple[Tuple[Any, ...], Any]] = []
        if "working_dir" in env:
            items.append((base + ("working_dir",), env["working_dir"]))
        mods = env.get("py_modules")
        if isinstance(mods, list):
            items += [(base + ("py_modules", i), v) for i, v in enumerate(mods)]
        for path, val in items:
            if isinstance(val, str) and not URI_SCHEME.match(val):
                yield ctx.finding(
                    "RL008",
                    ERROR,
                    path,
                    "a local path: the RayService's pods cannot see files on your machine and the "
                    "KubeRay operator does not upload them, so the app fails to deploy",
                    val,
                    "a remote URI (s3://, gs://, https://.../x.zip)",
                    "zip the code to object storage and reference it by URI, bake it into the image, "
                    "or (for rayllm_runtime) keep runtimePackaging.mode: configMap",
                )
