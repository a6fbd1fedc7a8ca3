"""Build every application of a serveConfigV2 the way Serve's controller does.

Run as a child process with the pod's environment (PYTHONPATH pointing at the laid-out
runtime ConfigMap, as the head container's env sets it), so what is imported is the
runtime copy the chart ships, on the Ray installed here. Reads a JSON object on stdin,
{label: serveConfigV2}, and prints one JSON line per application:
{"config", "name", "ok", "error", "module_file"}. One process serves several configs
so that Ray Serve LLM and vLLM are imported once.
"""

import json
import sys


def main() -> int:
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema

    for label, config in json.load(sys.stdin).items():
        build(label, config, import_attr, call_user_app_builder_with_args_if_necessary, Application,
              ServeDeploySchema)
    return 0


def build(label, config, import_attr, call_builder, Application, ServeDeploySchema) -> None:
    ServeDeploySchema.model_validate(config)  # what KubeRay submits must parse first
    for app in config.get("applications") or []:
        try:
            # Serve's build task: import the builder, call it through the one-parameter
            # check (and pydantic args conversion) that `serve deploy` applies.
            built = call_builder(import_attr(app["import_path"]), app.get("args") or {})
            ok, error = isinstance(built, Application), ""
            module = sys.modules.get(app["import_path"].replace(":", ".").rsplit(".", 1)[0])
            origin = getattr(module, "__file__", "") or ""
        except Exception as exc:  # reported per app, like Serve's DEPLOY_FAILED message
            ok, error, origin = False, f"{type(exc).__name__}: {exc}", ""
        print(json.dumps({"config": label, "name": app["name"], "ok": ok, "error": error, "module_file": origin}),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
