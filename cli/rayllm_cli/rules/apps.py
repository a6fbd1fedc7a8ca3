"""RL010: a custom app's import_path is importable from the runtime the pods get, and its args
validate with the builder's own args model (as the chart renders them)."""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ERROR, NOTICE, WARNING, Finding, RayLLMError
from ..merge import chart_dir
from .context import Context, as_dict, get, redact
from .references import GATEWAY_BUILDER
from .registry import rule

REPO = Path(__file__).resolve().parents[3]


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
            from rayllm_runtime.config import APP_ARGS_MODELS

        return dict(APP_ARGS_MODELS)
    except Exception:
        return None


@rule("RL010", "custom app import_path is importable and its args validate")
def rule_import_path(ctx: Context) -> Iterator[Finding]:
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
            env = as_dict(a.get("runtime_env"))
            if not env.get("working_dir") and not env.get("py_modules"):
                yield ctx.finding(
                    "RL010",
                    WARNING,
                    path,
                    f"module {module!r} is not part of rayllm_runtime: the chart does not ship it",
                    ip,
                    "a module in the image or in a remote runtime_env (working_dir / py_modules)",
                    "make sure the image contains it, or set runtime_env.working_dir to a remote zip",
                )
            continue
        roots = runtime_roots(mode)
        if not roots:
            continue
        label, root = roots[0]
        mfile = _module_file(root, module)
        if mfile is None:
            other = next(((lb, f) for lb, r in roots[1:] if (f := _module_file(r, module)) is not None), None)
            if other is None:
                yield ctx.finding(
                    "RL010",
                    ERROR,
                    path,
                    f"module {module!r} does not exist in {label}",
                    ip,
                    "an existing rayllm_runtime module",
                    "fix the import_path (e.g. rayllm_runtime.apps:build_gateway)",
                )
                continue
            # present in the other copy: the packed copy is stale (CI's `ray-llm pack-runtime --check` fails too)
            yield ctx.finding(
                "RL010",
                WARNING,
                path,
                f"module {module!r} is in {other[0]} but not in {label}",
                ip,
                "the chart's runtime copy in sync with runtime/",
                "run `ray-llm pack-runtime`" if mode != "image" else "rebuild the image",
            )
            label, mfile = other
        try:
            names = _top_level_names(mfile)
        except (SyntaxError, OSError, UnicodeDecodeError):
            continue
        if attr not in names:
            close = difflib.get_close_matches(attr, sorted(n for n in names if not n.startswith("_")), n=3)
            yield ctx.finding(
                "RL010",
                ERROR,
                path,
                f"{module} has no attribute {attr!r} ({label})",
                ip,
                "a builder defined in that module",
                f"did you mean {module}:{close[0]}?" if close else "fix the builder name",
            )
            continue
        builders = app_builders()
        if builders is None:
            yield ctx.finding(
                "RL010",
                NOTICE,
                ("customApps", name, "args"),
                "args not checked: rayllm_runtime.apps.APP_BUILDERS could not be imported (needs ray[serve])",
            )
            continue
        model = builders.get(ip) or builders.get(ip.replace(".", ":", 0))
        if model is None:
            continue
        from pydantic import ValidationError

        try:
            model.model_validate(
                rendered_gateway_args(ctx, name, as_dict(a.get("args")))
                if ip == GATEWAY_BUILDER
                else as_dict(a.get("args"))
            )
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err.get("loc", ()))
                fpath = ("customApps", name, "args") + loc
                msg = err.get("msg", "").removeprefix("Value error, ")
                yield ctx.finding(
                    "RL010",
                    ERROR,
                    fpath,
                    f"args rejected by {model.__name__}: {msg}",
                    redact(get(ctx.values, fpath), fpath),
                    err.get("type", ""),
                    "fix the argument (see the builder's args model in rayllm_runtime)",
                )


def rendered_gateway_args(ctx: Context, app_name: str, args: Dict[str, Any]) -> Dict[str, Any]:
    """A gateway app's args as the chart renders them: plus one `app` upstream per model of every
    llmApps entry that names this gateway (ray-llm.serve.config). Placement is left out: it is
    the chart's, not the user's, and always valid."""
    derived = [
        {"app": f"{app}.{model_name}", "model_ids": [as_dict(m.get("model_loading_config")).get("model_id")]}
        for model_name, m in ctx.models().items()
        for app in [m.get("app")]
        if isinstance(app, str)
        and as_dict(ctx.llm_apps().get(app)).get("gateway") == app_name
        and not as_dict(ctx.llm_apps().get(app)).get("disabled")
    ]
    if not derived:
        return args
    upstreams = args.get("upstreams")
    return {**args, "upstreams": (list(upstreams) if isinstance(upstreams, list) else []) + derived}
