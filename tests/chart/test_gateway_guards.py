"""The gateway's guards act as the values read: prod's and staging's `rate_limit` blocks (limits
without `enabled`) switch the limit on, checked with the gateway builder's own args model on the
rendered serveConfigV2; `enabled: false` keeps the settings and switches it off."""

from __future__ import annotations

import pytest

from rayllm_runtime.config import GatewayArgs

from ..conftest import VALUES_DIR, docs_of, helm_template, serve_config_of

GATEWAY = "rayllm_runtime.apps:build_gateway"


def _gateway_args(helm, files, sets=()):
    apps = serve_config_of(docs_of(helm_template(helm, files, sets).stdout))["applications"]
    return [GatewayArgs.model_validate(a["args"]) for a in apps if a["import_path"] == GATEWAY]


@pytest.mark.parametrize("values", ["prod.yaml", "staging.yaml"])
def test_configured_rate_limit_is_on(helm4, values):
    (args,) = _gateway_args(helm4, [VALUES_DIR / values])
    assert args.rate_limit.enabled and args.rate_limit.requests_per_minute > 0, args.rate_limit


def test_enabled_false_keeps_the_limit_off(helm4):
    (args,) = _gateway_args(helm4, [VALUES_DIR / "prod.yaml"],
                            ["customApps.gateway.args.rate_limit.enabled=false"])
    assert not args.rate_limit.enabled and args.rate_limit.requests_per_minute == 1200
