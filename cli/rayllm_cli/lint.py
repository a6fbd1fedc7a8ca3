"""``ray-llm lint``: validate, render with the real helm, check every rendered object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .errors import ERROR, NOTICE, WARNING, Finding
from .helm_run import HelmRender
from .ray_verdicts import (
    ENV_RAY_SCHEMAS,
    early_child,
    installed_version,
    ray_installed,
    ray_schemas_off,
    verdict_cache_dir,
)
from .ray_verdicts import UNSET as _UNSET
from .validate import Result, validate_values


@dataclass
class LintResult(Result):
    objects: int = 0
    notes: List[str] = field(default_factory=list)


def _ray_items(docs: List[dict]) -> List[tuple]:
    """(schema, where, text) of everything Ray's own models check: serveConfigV2 and each model file."""
    items = []
    for d in docs:
        if d.get("kind") == "RayService":
            text = (d.get("spec") or {}).get("serveConfigV2")
            if isinstance(text, str):
                items.append(
                    ("ServeDeploySchema", f"RayService/{d.get('metadata', {}).get('name')} spec.serveConfigV2", text)
                )
        labels = (d.get("metadata") or {}).get("labels") or {}
        if d.get("kind") == "ConfigMap" and labels.get("app.kubernetes.io/component") == "model-config":
            for key, text in (d.get("data") or {}).items():
                items.append(("LLMConfig", f"ConfigMap/{d['metadata'].get('name')} data.{key}", text))
    return items


def _ray_findings(docs: List[dict], child=None, cache: Any = _UNSET) -> List[Finding]:
    """Ray's own schemas: ServeDeploySchema on serveConfigV2, LLMConfig on each model file.
    ``cache``: the verdict cache directory if the caller already looked it up."""
    import hashlib

    from .checks_common import read_json_cache, write_json_cache

    items = _ray_items(docs)
    if cache is _UNSET:
        cache = verdict_cache_dir()

    def cache_file(schema: str, text: str) -> Optional[Path]:
        if cache is None:
            return None
        return cache / (hashlib.sha256((schema + "\0" + text).encode()).hexdigest() + ".json")

    files = [cache_file(schema, text) for schema, _w, text in items]
    verdicts: dict = {}  # index -> error text or None
    for i, path in enumerate(files):
        hit = read_json_cache(path)
        if isinstance(hit, dict) and "error" in hit:
            verdicts[i] = hit["error"]
    todo = [i for i in range(len(items)) if i not in verdicts]
    if todo:
        from .ray_verdicts import check_items

        fresh = check_items([(items[i][0], items[i][2]) for i in todo], child)
        for i, error in zip(todo, fresh, strict=True):  # one verdict per item (RayChild.run checks)
            verdicts[i] = error
            write_json_cache(files[i], {"error": error})

    out: List[Finding] = []
    for i, (schema, where, _text) in enumerate(items):
        error = verdicts.get(i)
        if error is None:
            continue
        if schema == "ServeDeploySchema":
            out.append(
                Finding(
                    "ray:ServeDeploySchema",
                    ERROR,
                    where,
                    f"Ray Serve rejects serveConfigV2: {error}",
                    expected="a valid Ray Serve config",
                    fix="check customApps / llmApps settings",
                )
            )
        else:
            out.append(
                Finding(
                    "ray:LLMConfig",
                    ERROR,
                    where,
                    f"Ray's LLMConfig rejects this model file: {error}",
                    expected="a valid ray.serve.llm.LLMConfig",
                    fix="fix the model's Ray sections (model_loading_config, engine_kwargs, ...)",
                )
            )
    return out


def _ray_release_mismatch(ray_version: Any) -> Optional[Finding]:
    """A warning when the Ray that judged the files is another release line than the pods run.

    Ray Serve LLM's config models change between minor releases (keys added, renamed,
    validated differently), so a verdict holds for the release that gave it: lint says so
    loudly, with the command that gets the pods' verdict.
    """
    here = installed_version("ray")
    if here is None or not isinstance(ray_version, str) or here.split(".")[:2] == ray_version.split(".")[:2]:
        return None
    return Finding(
        rule="ray:version",
        severity=WARNING,
        path="rayVersion",
        message=(
            f"Ray's schemas were checked with Ray {here} (installed here) while the pods run Ray "
            f"{ray_version} (rayVersion): fields that Ray {ray_version}'s LLMConfig or ServeDeploySchema "
            "would refuse (or read differently) are not caught"
        ),
        value=ray_version,
        expected=f"lint with the pods' Ray, {ray_version}",
        fix=f"lint from an environment with ray[serve,llm]=={ray_version} (make setup installs the chart's rayVersion)",
    )


def lint_values(
    files: Sequence[Path],
    sets: Sequence[str],
    set_strings: Sequence[str],
    *,
    strict: bool = False,
    release: str = "ray-llm",
    namespace: str = "default",
    kubernetes_version: Optional[str] = None,
    debug: Callable[[str], None] = lambda _m: None,
    render: Optional[HelmRender] = None,
    ray_child: Any = _UNSET,
    cache: Any = _UNSET,
) -> LintResult:
    """validate, helm template, then every check on the rendered objects.

    ``render``: a HelmRender already started by the caller (the CLI starts it
    before importing this module, so helm renders while Python loads the
    checks); without one, lint starts its own. ``ray_child`` and ``cache``:
    Ray's checker (or None) and the verdict cache, if the caller started and
    looked them up already (the CLI does, for the same reason); whoever starts
    the checker stops it.
    """
    if render is None:
        with HelmRender(files, sets, set_strings, release, namespace) as own:
            return lint_values(
                files,
                sets,
                set_strings,
                strict=strict,
                release=release,
                namespace=namespace,
                kubernetes_version=kubernetes_version,
                debug=debug,
                render=own,
                ray_child=ray_child,
                cache=cache,
            )
    if cache is _UNSET:
        cache = verdict_cache_dir()  # one lookup of the library versions per lint
    if ray_child is not _UNSET:  # the caller started it and stops it
        return _lint(files, sets, set_strings, strict, kubernetes_version, render, ray_child, cache, debug, release)
    child = early_child(cache)
    try:
        return _lint(files, sets, set_strings, strict, kubernetes_version, render, child, cache, debug, release)
    finally:
        if child is not None and child.proc.poll() is None:
            child.cancel()  # not needed after all (values errors, everything cached, ...)


def _lint(
    files,
    sets,
    set_strings,
    strict,
    kubernetes_version,
    render: HelmRender,
    child,
    cache: Optional[Path],
    debug: Callable[[str], None],
    release: str,
) -> LintResult:
    try:
        base = validate_values(files, sets, set_strings, strict=strict, release=release)
    except BaseException:
        render.cancel()
        raise
    merged = base.merged
    result = LintResult(findings=list(base.findings), merged=merged, model=base.model, strict=strict)
    if merged is None or any(f.severity == ERROR for f in base.findings):
        render.cancel()
        result.notes.append("rendering skipped: fix the values errors first")
        return result
    # Imported while helm may still be rendering (jsonschema and the Kubernetes schemas take a while).
    from .checks_common import ManifestParseError
    from .checks_crd import CrdNotFoundError
    from .manifest_checks import check_rendered

    proc = render.result()
    debug(f"helm template exited {proc.returncode}")
    if proc.returncode != 0:
        msg = proc.stderr.strip()[-2000:]
        result.findings.append(
            Finding(
                "helm",
                ERROR,
                "",
                f"helm template failed: {msg}",
                expected="the chart renders",
                fix="see helm's message",
            )
        )
        return result

    try:
        report = check_rendered(proc.stdout, kubernetes_version=kubernetes_version)
    except CrdNotFoundError as exc:
        result.findings.append(
            Finding(
                "crd",
                ERROR,
                "",
                f"KubeRay CRDs not found: {exc}",
                expected="the KubeRay CRDs",
                fix="set RAYLLM_KUBERAY_CRDS to their directory",
            )
        )
        return result
    except ManifestParseError as exc:
        result.findings.append(Finding("yaml", ERROR, "", f"rendered output does not parse: {exc}"))
        return result
    result.objects = len(report.objects)
    result.notes.append(report.summary())
    for f in report.findings:
        if f.severity not in (ERROR, WARNING, NOTICE):
            f.severity = ERROR
        result.findings.append(f)
    if ray_schemas_off():
        result.notes.append(
            f"Ray's schemas (ServeDeploySchema, LLMConfig) not checked: {ENV_RAY_SCHEMAS}={os.environ[ENV_RAY_SCHEMAS]}"
        )
    elif ray_installed():
        from .ray_verdicts import RayCheckError

        try:
            result.findings += _ray_findings(list(report.objects), child, cache)  # parsed once, by check_rendered
            mismatch = _ray_release_mismatch(merged.values.get("rayVersion"))
            if mismatch:
                result.findings.append(mismatch)
        except ImportError as exc:
            result.notes.append(f"Ray's schemas not checked: {exc} (install ray[serve,llm])")
        except RayCheckError as exc:
            result.findings.append(
                Finding(
                    "ray",
                    WARNING,
                    "",
                    f"Ray's schemas could not be checked: the checker process failed ({exc})",
                    expected="a working ray[serve,llm] in this Python",
                    fix=f"run with {ENV_RAY_SCHEMAS}=off to skip, or RAYLLM_RAY_CHECK=inprocess to see the full error",
                )
            )
    else:
        result.notes.append("Ray's schemas (ServeDeploySchema, LLMConfig) not checked: ray[serve,llm] is not installed")
    return result
