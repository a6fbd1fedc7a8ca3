"""Fill the model cache volume: ``python -m rayllm_runtime.model_cache`` (the chart's pre-pull Job).

Each model the values mark ``cached: true`` is downloaded from the Hugging Face Hub into
``<cache root>/<repo id>``, the path the chart renders as its ``model_source``, so a replica
(one scaled from zero too) loads from local disk. A finished download leaves a marker file;
a model that has one is skipped, so the Job is cheap to run again and a half-written copy
(the pod was killed mid-download) is completed instead of trusted.

Settings come from the environment, as the Job sets them:

``RAYLLM_CACHE_ROOT``      the volume's mount path
``RAYLLM_CACHE_MODELS``    JSON list of Hub repo ids (``["Qwen/Qwen2.5-7B-Instruct", ...]``)
``RAYLLM_CACHE_IGNORE``    JSON list of file patterns not to download (e.g. ``["original/*"]``)
the Hub token              in the env var huggingface_hub reads, from the Secret (secretKeyRef), never logged

Exit codes: 0 all cached, 1 a download failed (the Job retries), 2 bad settings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

#: Written into a model's folder when its download finished.
COMPLETE_MARKER = ".rayllm-complete"

Downloader = Callable[..., str]


class CacheSettingsError(ValueError):
    """The Job's environment does not say what to download or where."""


def _json_list(name: str, raw: Optional[str]) -> List[str]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        raise CacheSettingsError(f"got {name}={raw!r}; expected a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CacheSettingsError(f"got {name}={raw!r}; expected a JSON list of strings")
    return value


def model_dir(root: Path, repo_id: str) -> Path:
    """Where ``repo_id`` lives in the cache (the chart renders the same path)."""
    if repo_id.startswith("/") or ".." in repo_id.split("/"):
        raise CacheSettingsError(f"got repo id {repo_id!r}; expected a Hugging Face id such as org/name")
    return root / repo_id


def is_complete(root: Path, repo_id: str) -> bool:
    return (model_dir(root, repo_id) / COMPLETE_MARKER).is_file()


def fill_cache(
    root: Path,
    repo_ids: Sequence[str],
    ignore: Sequence[str] = (),
    download: Optional[Downloader] = None,
    say: Callable[[str], None] = print,
) -> List[str]:
    """Download each repo not yet complete into the cache; return the ids downloaded now."""
    if download is None:
        from huggingface_hub import snapshot_download

        download = snapshot_download
    done: List[str] = []
    for repo_id in repo_ids:
        target = model_dir(root, repo_id)
        if is_complete(root, repo_id):
            say(f"cached already: {repo_id} ({target})")
            continue
        started = time.monotonic()
        say(f"downloading {repo_id} into {target}")
        target.mkdir(parents=True, exist_ok=True)
        download(repo_id=repo_id, local_dir=str(target), ignore_patterns=list(ignore) or None)
        (target / COMPLETE_MARKER).write_text(json.dumps({"repo_id": repo_id, "finished": time.time()}) + "\n")
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        say(f"cached {repo_id}: {size / 1024**3:.2f} GiB in {time.monotonic() - started:.0f} s")
        done.append(repo_id)
    return done


def main(argv: Optional[Sequence[str]] = None) -> int:
    del argv  # configured by environment only, as the Job sets it
    try:
        root_env = os.environ.get("RAYLLM_CACHE_ROOT", "")
        if not root_env.startswith("/"):
            raise CacheSettingsError(f"got RAYLLM_CACHE_ROOT={root_env!r}; expected the volume's absolute mount path")
        models = _json_list("RAYLLM_CACHE_MODELS", os.environ.get("RAYLLM_CACHE_MODELS"))
        ignore = _json_list("RAYLLM_CACHE_IGNORE", os.environ.get("RAYLLM_CACHE_IGNORE"))
        root = Path(root_env)
        if not root.is_dir():
            raise CacheSettingsError(f"got RAYLLM_CACHE_ROOT={root_env!r}, which is not a mounted directory")
        for repo_id in models:
            model_dir(root, repo_id)  # refuses ids that would leave the volume
    except CacheSettingsError as exc:
        print(f"model cache: {exc}", file=sys.stderr)
        return 2
    try:
        fill_cache(root, models, ignore)
    except Exception as exc:  # the Job's pod log is the user's only view: one line, no token
        print(f"model cache: download failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"model cache: {len(models)} model(s) ready under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
