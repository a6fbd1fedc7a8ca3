"""RL002: names and routes are unique and do not shadow each other.
RL013: what a gateway fronts is reachable only through the gateway."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import urlparse

from ..errors import ERROR, WARNING, Finding, format_path
from .context import Context, as_dict, normalise_prefix
from .references import GATEWAY_BUILDER
from .registry import rule


@rule("RL002", "model ids, app names and route prefixes are unique and do not shadow each other")
def rule_duplicates(ctx: Context) -> Iterator[Finding]:
    seen: Dict[str, str] = {}
    for name, m in ctx.models().items():
        mid = as_dict(m.get("model_loading_config")).get("model_id")
        if not isinstance(mid, str):
            continue
        if mid in seen:
            yield ctx.finding(
                "RL002",
                ERROR,
                ("models", name, "model_loading_config", "model_id"),
                f"model_id is also used by models.{seen[mid]}",
                mid,
                "a unique model_id per model (clients select models by it)",
                "rename one model_id",
            )
        else:
            seen[mid] = name
    llm = ctx.llm_apps()
    for name in ctx.section("customApps"):
        if name in llm:
            yield ctx.finding(
                "RL002",
                ERROR,
                ("customApps", name),
                f"app name {name!r} is used by llmApps and customApps",
                name,
                "unique Serve application names",
                "rename the custom app",
            )
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
                yield ctx.finding(
                    "RL002",
                    ERROR,
                    path,
                    f"route prefix is also used by {format_path(other)}",
                    p,
                    "a unique route_prefix per application",
                    "change one of the prefixes",
                )
            elif p == "/" or q == "/":
                root, rest = (path, other) if p == "/" else (other, path)
                shadow.setdefault(root, []).append(format_path(rest))
            elif p.startswith(q + "/") or q.startswith(p + "/"):
                short, long_ = (path, other) if q.startswith(p + "/") else (other, path)
                sp, lp = (p, q) if q.startswith(p + "/") else (q, p)
                yield ctx.finding(
                    "RL002",
                    WARNING,
                    long_,
                    f"route prefix {lp} is nested under {sp} ({format_path(short)}); "
                    f"requests to {lp}/... go to this app, the rest of {sp}/... to the other",
                    lp,
                    "non-nested prefixes",
                    "use sibling prefixes (e.g. /a and /b)",
                )
    for root, shadowed in shadow.items():
        yield ctx.finding(
            "RL002",
            WARNING,
            root,
            f"route prefix '/' catches every path not matched by a longer prefix "
            f"({', '.join(shadowed)}); typos there silently reach this app",
            "/",
            "distinct prefixes",
            "give this app its own prefix (e.g. /chat) unless a catch-all is intended",
        )


def _local_route(url: str) -> str:
    """The Serve route an upstream URL on this cluster's own proxy points at ('' for another server)."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):
        return ""
    return normalise_prefix(parsed.path or "/")


@rule("RL013", "apps behind a gateway are not also reachable around it")
def rule_gateway_bypass(ctx: Context) -> Iterator[Finding]:
    routes = {
        normalise_prefix(a["routePrefix"]): name
        for name, a in ctx.llm_apps().items()
        if not a.get("disabled") and isinstance(a.get("routePrefix"), str)
    }
    for name, a in ctx.custom_apps().items():
        if a.get("import_path") != GATEWAY_BUILDER:
            continue
        upstreams = as_dict(a.get("args")).get("upstreams")
        for index, up in enumerate(upstreams if isinstance(upstreams, list) else []):
            url = as_dict(up).get("base_url")
            target = routes.get(_local_route(url)) if isinstance(url, str) else None
            if target is None:
                continue
            yield ctx.finding(
                "RL013",
                WARNING,
                ("customApps", name, "args", "upstreams", index, "base_url"),
                f"the gateway forwards to llmApps.{target} over its route, which anyone who reaches the serve "
                f"Service can call directly, skipping the gateway's API keys, rate limit and audit log",
                url,
                "apps behind a gateway have no route of their own",
                f"set `llmApps.{target}.gateway: {name}` (and remove its routePrefix and this upstream): its models "
                "are then reachable only through the gateway, over a Serve handle",
            )
