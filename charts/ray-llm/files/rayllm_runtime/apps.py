"""Typed application builders referenced by serveConfigV2 ``import_path``.

Ray Serve validates the app's ``args:`` into the builder's annotated pydantic
model (it checks the annotation with ``inspect``, so this module must not use
``from __future__ import annotations``). Builders also accept a plain dict so
they can be called directly.
"""

from typing import Any, Dict, Type, Union

from pydantic import BaseModel
from ray.serve import Application

from rayllm_runtime.config import APP_ARGS_MODELS, GatewayArgs


def build_gateway(args: GatewayArgs) -> Application:
    """OpenAI-compatible gateway + one deployment per model in ``args.models``
    (except colocated models, whose engines run in the gateway's replicas).

    Import path: ``rayllm_runtime.apps:build_gateway``.
    """
    from rayllm_runtime.deployment import bind_model
    from rayllm_runtime.gateway import RayLLMGateway

    if not isinstance(args, GatewayArgs):
        args = GatewayArgs.model_validate(args)
    # A colocated model runs inside the gateway's replicas: no deployment of its own.
    handles = {model.model_id: bind_model(model) for model in args.models if not model.colocated}
    # @serve.deployment made the class a Deployment; mypy keeps a decorated class's own type.
    ingress = RayLLMGateway.options(**args.ingress_deployment.to_serve_options())  # type: ignore[attr-defined]
    return ingress.bind(args.model_dump(mode="json"), handles)


#: import path -> args model, so tooling (the CLI) validates custom-app args
#: with the same models the builders use (defined Ray-free in config.py).
APP_BUILDERS: Dict[str, Type[BaseModel]] = dict(APP_ARGS_MODELS)


def validate_app_args(import_path: str, args: Union[Dict[str, Any], None]) -> BaseModel:
    """Validate ``args`` for a builder listed in APP_BUILDERS (raises on errors)."""
    try:
        model = APP_BUILDERS[import_path]
    except KeyError:
        raise KeyError(
            f"got import_path {import_path!r}; expected one of {sorted(APP_BUILDERS)}; fix the import path"
        ) from None
    return model.model_validate(args or {})
