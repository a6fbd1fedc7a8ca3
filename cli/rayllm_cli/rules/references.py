"""RL001: what a model, an LLM app or a custom app names exists and is enabled."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ..errors import ERROR, Finding
from .context import Context, as_dict, walk
from .registry import rule

#: The runtime's gateway builder: the only app an llmApps entry may put in front of itself.
GATEWAY_BUILDER = "rayllm_runtime.apps:build_gateway"


def tier_problem(ctx: Context, name: Any) -> Optional[str]:
    tiers = ctx.tiers()
    if not isinstance(name, str) or name not in tiers:
        return "missing"
    if tiers[name].get("disabled"):
        return "disabled"
    return None


@rule("RL001", "models and apps name tiers, apps and gateways that exist and are enabled", in_template=True)
def rule_references(ctx: Context) -> Iterator[Finding]:
    enabled_tiers = sorted(ctx.enabled_tiers())
    apps = ctx.llm_apps()
    enabled_apps = sorted(k for k, v in apps.items() if not v.get("disabled"))
    for name, m in ctx.models().items():
        problem = tier_problem(ctx, m.get("tier"))
        if problem:
            yield ctx.finding(
                "RL001",
                ERROR,
                ("models", name, "tier"),
                f"model {name!r} names a {problem} tier",
                m.get("tier"),
                f"one of the enabled tiers {enabled_tiers}",
                "add the tier under `tiers`"
                if problem == "missing"
                else "remove `disabled: true` from the tier, or pick another tier",
            )
        app = m.get("app")
        if not isinstance(app, str) or app not in apps or apps[app].get("disabled"):
            kind = "disabled" if isinstance(app, str) and app in apps else "missing"
            yield ctx.finding(
                "RL001",
                ERROR,
                ("models", name, "app"),
                f"model {name!r} names a {kind} llmApps entry",
                app,
                f"one of the enabled llmApps {enabled_apps}",
                f"add `llmApps.{app}: {{routePrefix: /{app}}}`"
                if kind == "missing"
                else "enable the app or pick another",
            )
    gateways = sorted(n for n, a in ctx.custom_apps().items() if a.get("import_path") == GATEWAY_BUILDER)
    for name, a in apps.items():
        if a.get("disabled"):
            continue
        route, gateway = a.get("routePrefix"), a.get("gateway")
        if (route is None) == (gateway is None):
            which = "both routePrefix and gateway" if route is not None else "neither routePrefix nor gateway"
            yield ctx.finding(
                "RL001",
                ERROR,
                ("llmApps", name),
                f"llmApps.{name} sets {which}",
                {"routePrefix": route, "gateway": gateway},
                "exactly one: routePrefix (Ray's OpenAI app on that route) or gateway (only through that gateway)",
                f"keep `gateway: {gateway}` and remove routePrefix"
                if route is not None
                else f"add `routePrefix: /{name}`, or `gateway: <a customApps gateway>`",
            )
        elif gateway is not None and gateway not in gateways:
            yield ctx.finding(
                "RL001",
                ERROR,
                ("llmApps", name, "gateway"),
                f"llmApps.{name} is served through {gateway!r}, which is not an enabled customApps entry with "
                f"import_path {GATEWAY_BUILDER}",
                gateway,
                f"one of {gateways}",
                f"add customApps.{gateway} with import_path {GATEWAY_BUILDER}, or name an existing gateway",
            )
    for name, a in ctx.custom_apps().items():
        for path, val in walk(as_dict(a.get("args")), ("customApps", name, "args")):
            if path[-1] == "tier" and isinstance(val, str):
                problem = tier_problem(ctx, val)
                if problem:
                    yield ctx.finding(
                        "RL001",
                        ERROR,
                        path,
                        f"custom app {name!r} names a {problem} tier",
                        val,
                        f"one of the enabled tiers {enabled_tiers}",
                        "add/enable the tier or pick another",
                    )
