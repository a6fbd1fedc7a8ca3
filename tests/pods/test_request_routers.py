"""The request routers `ray-llm validate` (RL021) knows, checked against the pods' Ray: each class
imports under the path the rule names, and its initialize_state takes exactly the listed arguments."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("ray.serve")


def test_router_table_matches_the_pods_ray():
    from ray._common.utils import import_attr

    from rayllm_cli.rules.serving import RAY_REQUEST_ROUTERS

    for path, kwargs in RAY_REQUEST_ROUTERS.items():
        cls = import_attr(path)
        params = inspect.signature(cls.initialize_state).parameters.values()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = tuple(p.name for p in params if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD)
        if kwargs is None:  # the rule leaves a **kwargs router's arguments alone
            assert takes_any, path
        else:
            assert not takes_any and named == kwargs, path


def test_rays_request_router_config_imports_the_class_from_our_values():
    """Serve's own RequestRouterConfig (what the deploy builds from the model file) accepts the
    scenario's router and keeps its arguments."""
    from pathlib import Path

    import yaml
    from ray.serve.config import RequestRouterConfig

    scenario = Path(__file__).resolve().parents[2] / "charts" / "ray-llm" / "ci" / "request-routing-values.yaml"
    cfg = yaml.safe_load(scenario.read_text())["models"]["tiny-chat"]["deployment_config"]["request_router_config"]
    parsed = RequestRouterConfig(**cfg)
    assert parsed.request_router_class == cfg["request_router_class"]
    assert parsed.get_request_router_class().__name__ == "PrefixCacheAffinityRouter"
    with pytest.raises(Exception):
        RequestRouterConfig(request_router_class="ray.serve.llm.request_router:Nope")
