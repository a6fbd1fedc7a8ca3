"""``ray-llm``: validate, lint and plan ray-llm chart values; keep generated files fresh.

Exit codes: 0 valid / up to date; 1 invalid input (error findings, stale
generated file) or an internal error (one line, never a traceback); 2 usage
error (bad flags, missing file, bad --set). ``diff`` follows diff(1): 0 no
difference, 1 differences, 2 trouble (its failures exit 2).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, NOTICE, RayLLMError, UsageError

# typer >= 0.20 vendors click as typer._click and no longer depends on click;
# older typer uses click itself. Catch the exception classes of whichever is here
# (both when both are installed), never requiring click.
_EXC_MODULES = []
try:
    from typer._click import exceptions as _tce

    _EXC_MODULES.append(_tce)
except ImportError:  # pragma: no cover - older typer raises click's own classes
    try:
        import click.exceptions as _ce

        _EXC_MODULES.append(_ce)
    except ImportError:
        pass


def _classes(name: str) -> tuple:
    found = [getattr(m, name) for m in (*_EXC_MODULES, typer) if hasattr(m, name)]
    return tuple(dict.fromkeys(found))


_EXIT = _classes("Exit")
_USAGE = _classes("UsageError")
_CLICK = _classes("ClickException")
_ABORT = _classes("Abort")

HELP = """Validate, lint and plan values for the ray-llm chart.

Exit codes: 0 valid; 1 invalid values (or a stale generated file); 2 usage error
(bad flags, missing file, bad --set expression).
"""

app = typer.Typer(
    name="ray-llm",
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}

FilesOpt = typer.Option(None, "-f", "--values", help="Values file (repeatable; later files win, like helm -f).")
SetOpt = typer.Option(None, "--set", help="Helm --set expression (repeatable): a.b=c, a[0].b=c, a={x,y}, k1=v1,k2=v2.")
SetStrOpt = typer.Option(None, "--set-string", help="Like --set but every value is a string.")
OutputOpt = typer.Option("text", "-o", "--output", help="text or json.")


def _debug(msg: str) -> None:
    if _STATE["debug"]:
        print(f"[debug] {msg}", file=sys.stderr)


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Print what the tool does (also set by HELM_DEBUG under `helm ray-llm`)."
    ),
) -> None:
    _STATE["debug"] = debug or os.environ.get("HELM_DEBUG", "").lower() in ("1", "true")
    if _STATE["debug"]:
        for var in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_PLUGIN_DIR", "HELM_BIN"):
            if os.environ.get(var):
                _debug(f"{var}={os.environ[var]}")


def _check_output(output: str) -> str:
    if output not in ("text", "json"):
        raise UsageError(f"--output {output!r} is not supported", fix="use --output text or --output json")
    return output


def _print_findings(
    findings, *, header: str, valid: bool, output: str, extra: Optional[dict] = None, show_notices: bool = True
) -> None:
    if output == "json":
        doc = {"valid": valid, "findings": [f.to_dict() for f in findings]}
        if extra:
            doc.update(extra)
        print(json.dumps(doc, indent=2, default=str))
        return
    shown = [f for f in findings if show_notices or f.severity != NOTICE]
    for f in shown:
        print(f.render())
    n_err = sum(1 for f in findings if f.severity == "error")
    n_warn = sum(1 for f in findings if f.severity == "warning")
    verdict = "valid" if valid else "INVALID"
    print(f"{header}: {verdict} ({n_err} error(s), {n_warn} warning(s))")


@app.command()
def validate(
    values: Optional[List[Path]] = FilesOpt,
    set_: Optional[List[str]] = SetOpt,
    set_string: Optional[List[str]] = SetStrOpt,
    output: str = OutputOpt,
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
    release: Optional[str] = typer.Option(
        None, "--release", help="Release name of the install (it names the RayService; checked too)."
    ),
) -> None:
    """Merge the chart defaults, -f files and --set like Helm, then check the schema and the cross-field rules."""
    output = _check_output(output)
    from .validate import validate_values

    files = values or []
    _debug(f"validate files={[str(f) for f in files]} set={set_} set_string={set_string}")
    result = validate_values(files, set_ or [], set_string or [], strict=strict, release=release)
    _print_findings(
        result.findings,
        header=f"values {' + '.join(map(str, files)) or '(chart defaults)'}",
        valid=result.valid,
        output=output,
    )
    raise typer.Exit(EXIT_OK if result.valid else EXIT_INVALID)


@app.command()
def lint(
    values: Optional[List[Path]] = FilesOpt,
    set_: Optional[List[str]] = SetOpt,
    set_string: Optional[List[str]] = SetStrOpt,
    output: str = OutputOpt,
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
    release: str = typer.Option("ray-llm", "--release", help="Release name for helm template."),
    namespace: Optional[str] = typer.Option(
        None, "-n", "--namespace", help="Namespace (default $HELM_NAMESPACE or 'default')."
    ),
    kubernetes_version: Optional[str] = typer.Option(
        None, "--kubernetes-version", help="Kubernetes version for built-in schemas."
    ),
) -> None:
    # One line: the command list in --help keeps a docstring's line breaks.
    """validate, then `helm template` and check every manifest (Kubernetes schemas, KubeRay CRD, Ray's schemas, sizes)."""  # noqa: E501
    output = _check_output(output)
    from .helm_run import HelmRender

    ns = namespace or os.environ.get("HELM_NAMESPACE") or "default"
    # helm starts rendering now, and on a first run Ray's checker starts importing
    # Ray, while the checks below are imported.
    with HelmRender(values or [], set_ or [], set_string or [], release, ns) as render:
        from .ray_verdicts import early_child, verdict_cache_dir

        cache = verdict_cache_dir()
        child = early_child(cache)
        try:
            from .lint import lint_values

            result = lint_values(
                values or [],
                set_ or [],
                set_string or [],
                strict=strict,
                release=release,
                namespace=ns,
                kubernetes_version=kubernetes_version,
                debug=_debug,
                render=render,
                ray_child=child,
                cache=cache,
            )
        finally:
            if child is not None and child.proc.poll() is None:
                child.cancel()  # not needed after all, or lint failed
    _print_findings(
        result.findings,
        header="lint",
        valid=result.valid,
        output=output,
        extra={"objects": result.objects, "notes": result.notes},
    )
    if output == "text":
        for note in result.notes:
            print(f"note: {note}")
    raise typer.Exit(EXIT_OK if result.valid else EXIT_INVALID)


@app.command()
def plan(
    values: Optional[List[Path]] = FilesOpt,
    set_: Optional[List[str]] = SetOpt,
    set_string: Optional[List[str]] = SetStrOpt,
    output: str = OutputOpt,
) -> None:
    """Per tier: models, GPUs and workers at min/max replicas, whether each model's weights fit its GPUs, and the
    idle floor (GPU nodes held with no traffic, and why)."""
    output = _check_output(output)
    from .plan import build_plan, render_plan_text
    from .validate import validate_values

    result = validate_values(values or [], set_ or [], set_string or [])
    if result.merged is None:
        _print_findings(result.findings, header="values", valid=False, output=output)
        raise typer.Exit(EXIT_INVALID)
    the_plan = build_plan(result.merged.values)
    errors = [f.to_dict() for f in result.errors]
    if output == "json":
        print(
            json.dumps(
                {
                    "valid": result.valid,
                    "tiers": the_plan["tiers"],
                    "idle_floor": the_plan["idle_floor"],
                    "model_cache": the_plan["model_cache"],
                    "assumptions": the_plan["assumptions"],
                    "errors": errors,
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(render_plan_text(the_plan))
        if errors:
            print(f"\nnote: the values have {len(errors)} error(s); run `ray-llm validate` for details")
    raise typer.Exit(EXIT_OK if result.valid else EXIT_INVALID)


@app.command("diff")
def diff_command(
    old: Path = typer.Argument(..., help="The release as it is: a values file, or its manifests (helm get manifest)."),
    new: Path = typer.Argument(..., help="The values to apply: a values file."),
    base: Optional[List[Path]] = typer.Option(
        None, "--base", "-f", help="Values files under both sides (repeatable, in order, like helm -f)."
    ),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", help="Helm --set expression for the new side (repeatable)."
    ),
    output: str = OutputOpt,
    release: str = typer.Option("llm", "--release", help="Release name for helm template."),
    namespace: Optional[str] = typer.Option(
        None, "-n", "--namespace", help="Namespace (default $HELM_NAMESPACE or 'default')."
    ),
) -> None:
    """What applying NEW over OLD does: which apps Serve redeploys (and which models restart with them),
    whether KubeRay builds a new cluster (and the field that makes it), the extra GPUs and node pools the
    upgrade needs at its peak, and which ConfigMaps change. Exit 0: no difference; 1: differences; 2: trouble."""
    output = _check_output(output)
    from .diff import compare, load_side, render_text

    ns = namespace or os.environ.get("HELM_NAMESPACE") or "default"
    shared = list(base or [])
    try:
        old_side = load_side(str(old), [old] if _is_manifest(old) else shared + [old], [], release, ns)
        new_side = load_side(str(new), shared + [new], set_ or [], release, ns)
        report = compare(old_side, new_side)
    except RayLLMError as exc:
        exc.exit_code = EXIT_USAGE  # as diff(1): 1 means "they differ", so trouble is 2
        raise
    if output == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_text(report))
    raise typer.Exit(EXIT_INVALID if report["differs"] else EXIT_OK)


def _is_manifest(path: Path) -> bool:
    from .diff import _looks_rendered

    return path.is_file() and _looks_rendered(path)


@app.command("run")
def run_command(
    values: Optional[List[Path]] = FilesOpt,
    set_: Optional[List[str]] = SetOpt,
    set_string: Optional[List[str]] = SetStrOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the local Serve proxy listens on."),
    port: int = typer.Option(8000, "--port", help="Port of the local Serve proxy."),
    model: Optional[List[str]] = typer.Option(
        None, "--model", help="MODEL_ID=PATH: local weights for a model id (repeatable)."
    ),
    model_source: str = typer.Option(
        "auto",
        "--model-source",
        help="Weights without a GPU: auto (the values' source if local, cached or "
        "reachable, else a tiny random model), values, or tiny.",
    ),
    gpu: Optional[bool] = typer.Option(
        None, "--gpu/--cpu", help="Run as on a CUDA GPU or without one (default: detect)."
    ),
    num_cpus: Optional[int] = typer.Option(
        None,
        "--num-cpus",
        help="Logical CPUs of the local Ray (default: what the apps ask, at least the machine's cores).",
    ),
    secret: Optional[List[str]] = typer.Option(
        None,
        "--secret",
        help="SECRET_NAME=PATH: files that stand in for a Secret the pods mount "
        "(e.g. the gateway's API keys), laid out at its mountPath (repeatable).",
    ),
    model_cache: Optional[Path] = typer.Option(
        None,
        "--model-cache",
        help="Local directory that stands in for the model cache volume (modelCache.mountPath): model sources on "
        "the volume load from here (e.g. weights the pre-pull Job's layout, <dir>/<org>/<name>).",
    ),
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", help="Where to lay out the mounted files (default: a temp dir, removed at exit)."
    ),
    once: bool = typer.Option(False, "--once", help="Deploy, send one chat completion per model, print it, shut down."),
    release: str = typer.Option("llm", "--release", help="Release name for helm template."),
    deploy_timeout: float = typer.Option(
        900.0,
        "--deploy-timeout",
        help="Seconds to wait for every app to be RUNNING before failing (exit 1); a "
        "replica the local Ray cannot place fails at once.",
    ),
) -> None:
    """Deploy the serveConfigV2 the chart renders onto a local Ray (no Kubernetes) and print the endpoint."""
    from .run_command import parse_model_overrides, parse_secret_mounts, run_local

    overrides = parse_model_overrides(model or [])
    secrets = parse_secret_mounts(secret or [])

    def say(line: str) -> None:
        print(f"ray-llm run: {line}", flush=True)

    raise typer.Exit(
        run_local(
            values or [],
            set_ or [],
            set_string or [],
            host=host,
            port=port,
            model_overrides=overrides,
            model_source=model_source,
            gpu=gpu,
            num_cpus=num_cpus,
            workdir=workdir,
            once=once,
            release=release,
            say=say,
            deploy_timeout_s=deploy_timeout,
            secrets=secrets,
            model_cache=model_cache,
        )
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@app.command()
def schema(
    check: bool = typer.Option(False, "--check", help="Exit 1 if a generated file is stale instead of writing it."),
    path: Optional[Path] = typer.Option(None, "--path", help="Write only the JSON schema, to this file."),
) -> None:
    """Write the files generated from the Pydantic values models (atomically): charts/ray-llm/values.schema.json
    and charts/ray-llm/templates/_defaults.tpl (the defaults of tiers, models, llmApps and customApps entries)."""
    from rayllm_schemas.schema_gen import generated_files, render_values_schema

    targets = generated_files() if path is None else [(path, render_values_schema())]
    stale = []
    for target, text in targets:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            print(f"{target} is up to date")
        elif check:
            print(f"{target} is stale; run `ray-llm schema` to regenerate it")
            stale.append(target)
        else:
            _atomic_write(target, text)
            print(f"wrote {target}")
    raise typer.Exit(EXIT_INVALID if stale else EXIT_OK)


@app.command()
def docs(
    check: bool = typer.Option(False, "--check", help="Exit 1 if the README table is stale instead of writing it."),
    path: Optional[Path] = typer.Option(None, "--path", help="README (default charts/ray-llm/README.md)."),
) -> None:
    """Regenerate the values table in the chart README between the values-table markers."""
    from .docs import default_readme, update_readme

    target = path or default_readme()
    if not target.exists():
        raise UsageError(f"{target} does not exist", fix="pass --path to the chart README")
    current = target.read_text(encoding="utf-8")
    new = update_readme(current)
    if check:
        if new != current:
            print(f"{target}: values table is stale; run `ray-llm docs`")
            raise typer.Exit(EXIT_INVALID)
        print(f"{target}: values table is up to date")
        return
    if new != current:
        _atomic_write(target, new)
        print(f"wrote {target}")
    else:
        print(f"{target}: values table is up to date")


@app.command("pack-runtime")
def pack_runtime(
    check: bool = typer.Option(False, "--check", help="Exit 1 if charts/ray-llm/files/rayllm_runtime is stale."),
) -> None:
    """Copy runtime/rayllm_runtime into the chart (charts/ray-llm/files/) so the ConfigMap ships it."""
    from . import runtime_pack

    diffs = runtime_pack.differences()
    if check:
        if diffs:
            print("the chart's runtime copy is stale: " + ", ".join(diffs))
            print("run `ray-llm pack-runtime`")
            raise typer.Exit(EXIT_INVALID)
        print("the chart's runtime copy is up to date")
        return
    if not diffs:
        print("the chart's runtime copy is up to date")
        return
    files = runtime_pack.pack()
    print(f"packed {len(files)} file(s) into {runtime_pack.PACKED}")


@app.command()
def rules(output: str = OutputOpt) -> None:
    """List the cross-field rules validate and lint run."""
    output = _check_output(output)
    from .rules import RULES

    if output == "json":
        print(json.dumps([{"id": r.id, "title": r.title, "in_template": r.in_template} for r in RULES], indent=2))
        return
    for r in RULES:
        print(f"{r.id}  {r.title}{'  (helm template checks it too)' if r.in_template else ''}")


def entrypoint(argv: Optional[List[str]] = None) -> None:
    """Console script: run the app; turn every failure into a message and an exit code."""
    for stream in (sys.stdout, sys.stderr):  # an odd file name or value must not kill the output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.exit(run(argv))


def run(argv: Optional[List[str]] = None) -> int:
    try:
        rv = app(args=argv, prog_name="ray-llm", standalone_mode=False)
        return int(rv or 0)
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
    except _CLICK as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
    except _ABORT:
        print("ray-llm: aborted", file=sys.stderr)
        return EXIT_INVALID
    except RayLLMError as exc:
        print(f"ray-llm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ray-llm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_INVALID
    except Exception as exc:  # an internal error: one line, no traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"ray-llm: internal error: {type(exc).__name__}: {first} (re-run with --debug and report it)",
            file=sys.stderr,
        )
        if _STATE["debug"]:
            import traceback

            traceback.print_exc()
        return EXIT_INVALID


if __name__ == "__main__":
    entrypoint()
