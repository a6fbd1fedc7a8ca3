"""Ray's own verdict on rendered files: ServeDeploySchema on serveConfigV2, LLMConfig on model files.

lint runs this module as a child process (``python -m rayllm_cli.ray_verdicts``,
JSON on stdin and stdout) so that its own process never imports Ray:

* Importing Ray's models costs seconds, mostly torch and transformers, which
  Ray's ``download_utils`` and ``llm_config`` load through ``try_import``
  (optional for Ray) and which validation never uses; pandas (~0.15 s more) is
  the same case in Serve's ``_private.utils`` (a JSON encoder for DataFrames).
  The child imports Ray with those held back (Ray then binds ``None`` for them,
  as it does when they are not installed): about 0.7 s instead of 2.1 s here.
* Holding them back rebinds module globals inside Ray. In a throwaway child
  process that does nothing but validate, nobody else sees that.
* A file that fails in that mode is checked again after the held-back modules
  are imported for real and bound where Ray left ``None``. A rejection is then
  exactly what a plain import of Ray would say; an acceptance never depended
  on them (no validator touches them; a test compares both modes).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from pydantic import BaseModel

#: Optional imports of Ray's config and Serve modules, unused by validation.
DEFERRED = ("torch", "transformers", "pandas")

#: RAYLLM_RAY_CHECK=inprocess checks in lint's own process (plain Ray import).
ENV_MODE = "RAYLLM_RAY_CHECK"

# Ray's own models cost about a second on a first run (a child process imports
# Ray Serve and ray.llm); `off` skips them for quick iterations (the other checks still run).
ENV_RAY_SCHEMAS = "RAYLLM_RAY_SCHEMAS"

#: Marks "not looked up yet" (None already means no cache: RAYLLM_CACHE_DIR=off or no Ray).
UNSET: object = object()

Item = Tuple[str, str]  # (schema name, YAML text)


def _llm_config_class() -> type[BaseModel]:
    """Ray's LLMConfig from the module that defines it.

    ``ray.serve.llm`` (the public re-export, a subclass that adds nothing) also
    imports LLMServer and with it vLLM and its engine: 10-40 s before the first
    check. The defining module needs neither; fall back to the public name when a
    Ray release moves it.
    """
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError:
        from ray.serve.llm import LLMConfig
    return LLMConfig


def _quiet_ray() -> None:
    logging.getLogger("ray").setLevel(logging.ERROR)
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")


def import_models(defer: bool) -> Dict[str, type[BaseModel]]:
    """{"ServeDeploySchema": ..., "LLMConfig": ...}; with ``defer``, the DEFERRED
    modules are held back while Ray's modules import (see the module doc)."""
    _quiet_ray()
    held = [name for name in DEFERRED if defer and name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep library chatter out of our (JSON) stdout
            from ray.serve.schema import ServeDeploySchema

            return {"ServeDeploySchema": ServeDeploySchema, "LLMConfig": _llm_config_class()}
    finally:
        for name in held:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def bind_deferred() -> None:
    """Import the held-back modules and bind them wherever Ray's modules hold None for them."""
    for name in DEFERRED:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # not installed: Ray runs without it too
        for mod_name, mod in list(sys.modules.items()):
            if mod is not None and mod_name.split(".")[0] == "ray" and vars(mod).get(name, 0) is None:
                setattr(mod, name, module)


def _verdict(model: type[BaseModel], text: str) -> Optional[str]:
    import yaml
    from pydantic import ValidationError

    try:
        model.model_validate(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        return None
    except (ValidationError, yaml.YAMLError, ValueError, TypeError) as exc:
        return str(exc)[:800]
    except ImportError as exc:  # e.g. server_cls names a module that is not there: Ray fails the same way at deploy
        return f"{type(exc).__name__}: {exc}"[:800]


def memoize_router_pickling() -> None:
    """Pickle each request router class once per process.

    Ray's LLMConfig validator builds a DeploymentConfig, whose RequestRouterConfig
    imports and cloudpickles the request router class: about 10 ms per model
    file, for the same class every time (Serve's default unless a file names
    another). The first file with a given router path runs Ray's own code (so
    an import or pickling failure is still reported); later ones reuse its
    result. Only for this throwaway child; a Ray without the method is left as is.
    """
    try:
        from ray.serve.config import RequestRouterConfig
    except ImportError:
        return
    real = getattr(RequestRouterConfig, "_serialize_request_router_cls", None)
    if real is None or getattr(real, "_rayllm_memo", False):
        return
    done: Dict[Optional[str], Tuple[bytes, str]] = {}

    def serialize_once(self) -> None:
        key = self.request_router_class
        if not (key is None or isinstance(key, str)):
            return real(self)  # a class object, not a path: no safe key
        if key not in done:
            real(self)
            done[key] = (self.get_serialized_request_router_cls(), self.request_router_class)
            return None
        serialized, path = done[key]
        self.set_serialized_request_router_cls(serialized)
        self.request_router_class = path
        return None

    serialize_once._rayllm_memo = True  # type: ignore[attr-defined]  # marks Ray's method as patched
    # Monkeypatching Ray's method is the point here (see the docstring).
    RequestRouterConfig._serialize_request_router_cls = serialize_once  # type: ignore[method-assign]


def check(
    items: Sequence[Item], defer: bool, memoize: bool = False, models: Optional[Dict[str, type[BaseModel]]] = None
) -> List[Optional[str]]:
    """Ray's error text per item (None: accepted); ``models`` if already imported with ``defer``."""
    models = models or import_models(defer)
    if memoize:
        memoize_router_pickling()
    verdicts = [_verdict(models[schema], text) for schema, text in items]
    if defer and any(v is not None for v in verdicts):
        bind_deferred()  # confirm rejections with everything Ray would have imported
        verdicts = [
            v if v is None else _verdict(models[schema], text)
            for v, (schema, text) in zip(verdicts, items, strict=True)
        ]
    return verdicts


class RayCheckError(RuntimeError):
    """The child process failed (not a verdict: lint reports it as such)."""


class RayChild:
    """The checker process. It imports Ray as soon as it starts and only then
    reads the items, so lint can start it early (a first run, nothing cached)
    and let Ray import while helm renders and the values are validated."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rayllm_cli.ray_verdicts"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, items: Sequence[Item], timeout: float = 600) -> List[Optional[str]]:
        try:
            out, err = self.proc.communicate(json.dumps(list(items)), timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise RayCheckError(f"no answer in {timeout:.0f} s") from None
        try:
            verdicts = json.loads(out) if self.proc.returncode == 0 else None
        except json.JSONDecodeError:
            verdicts = None
        if not isinstance(verdicts, list) or len(verdicts) != len(items):
            tail = (err or "").strip().splitlines()[-1:] or [f"exit {self.proc.returncode}"]
            if "ModuleNotFoundError" in (err or "") or "ImportError" in (err or ""):
                raise ImportError(tail[0])
            raise RayCheckError(tail[0])
        return verdicts

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def check_in_child(items: Sequence[Item], child: Optional[RayChild] = None) -> List[Optional[str]]:
    """``check(items, defer=True)`` in a child process (see the module doc)."""
    return (child or RayChild()).run(items)


def in_process() -> bool:
    return os.environ.get(ENV_MODE, "").lower() == "inprocess"


def check_items(items: Sequence[Item], child: Optional[RayChild] = None) -> List[Optional[str]]:
    """What lint calls: a child process (``child`` if already started) unless RAYLLM_RAY_CHECK=inprocess."""
    if in_process():
        return check(items, defer=False)
    return check_in_child(items, child)


# ---- lint's side: what it looks up and starts before importing its checks.
# These need only the standard library and checks_common (PyYAML), so the CLI can
# call them first thing and let the child import Ray while everything else loads.


@functools.lru_cache(maxsize=None)
def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution`` (None if absent); looked up once per process,
    since each lookup scans the installed distributions."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def verdict_cache_dir() -> Optional[Path]:
    """Where Ray's verdicts are cached, keyed by content and library versions; None when off.

    A first check imports Ray Serve and its LLM config models in a child
    process (see the module doc), several times what the rest of lint costs. A
    verdict depends only on the text checked and the versions of Ray and
    pydantic, so a re-lint of unchanged model files (the common case in a
    pre-commit hook or CI) needs no Ray import at all. ``RAYLLM_CACHE_DIR=off``
    turns it off.
    """
    import hashlib

    from .checks_common import user_cache_dir

    ray, pydantic = installed_version("ray"), installed_version("pydantic")
    if ray is None or pydantic is None:
        return None
    versions = f"ray={ray};pydantic={pydantic}"
    return user_cache_dir("ray-verdicts", hashlib.sha256(versions.encode()).hexdigest()[:16])


def ray_schemas_off() -> bool:
    from .checks_common import env_says_off

    return env_says_off(ENV_RAY_SCHEMAS)


def ray_installed() -> bool:
    # find_spec("ray.serve") would import the ray package (~0.25 s) even when every
    # verdict is cached; the top-level lookup does not import anything, and a Ray
    # without Serve's dependencies shows up as an ImportError from the checker.
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def early_child(cache: Optional[Path]) -> Optional[RayChild]:
    """Start Ray's checker now when it will almost surely be needed: a first run,
    with no verdict cached yet (a fresh CI runner). It then imports Ray while helm
    renders and the values are validated. Later runs start it only on a cache miss."""
    if in_process() or ray_schemas_off() or not ray_installed():
        return None
    if cache is not None and cache.is_dir() and any(cache.glob("*.json")):
        return None
    return RayChild()


def main(argv: Optional[List[str]] = None) -> int:
    """stdin: JSON [[schema, text], ...]; stdout: JSON [error or null, ...].
    ``--plain`` runs Ray as is (nothing held back, nothing memoised), for comparison."""
    plain = "--plain" in (sys.argv[1:] if argv is None else argv)
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # only the verdicts go to stdout, whatever a library prints
        models = import_models(defer=not plain)  # before reading: lint may start this process before it has the items
        items = [tuple(item) for item in json.load(sys.stdin)]
        verdicts = check(items, defer=not plain, memoize=not plain, models=models)
    out.write(json.dumps(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
