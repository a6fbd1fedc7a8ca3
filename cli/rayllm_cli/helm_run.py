"""``helm template`` in the background, for lint and run.

Stdlib only (plus the chart lookup), so the CLI can start helm before it
imports the value models and checks: helm then renders in its own process
while Python loads and validates, and lint costs about max(helm, validate)
instead of their sum on a machine with two or more cores.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import List, Optional, Sequence

from .errors import RayLLMError


def helm_command(
    files: Sequence[Path],
    sets: Sequence[str],
    set_strings: Sequence[str],
    release: str,
    namespace: str,
    chart: Optional[Path] = None,
) -> List[str]:
    from .helm_tools import ToolError, find_helm
    from .merge import chart_dir

    try:
        helm = find_helm()
    except ToolError as exc:
        raise RayLLMError(
            message=f"no helm binary: {exc.message}",
            fix="put helm on PATH or run `python -m rayllm_cli.helm_tools fetch`",
        ) from exc
    helm_env = os.environ.get("HELM_BIN")
    cmd = [
        helm_env if helm_env and os.path.exists(helm_env) else str(helm),
        "template",
        release,
        str(chart or chart_dir()),
        "--namespace",
        namespace,
    ]
    for f in files:
        cmd += ["-f", str(f)]
    for s in sets:
        cmd += ["--set", s]
    for s in set_strings:
        cmd += ["--set-string", s]
    return cmd


class HelmRun:
    """``helm template`` started in the background; ``result()`` waits for it.

    Output goes to unnamed temporary files, not pipes: helm writing more than a
    pipe holds would otherwise stall until someone reads it.
    """

    def __init__(self, cmd: List[str]):
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        # A blocking wait, with a timer for the deadline: Popen.wait(timeout=...)
        # polls with sleeps of up to 50 ms, which a fast render would pay in full.
        expired = threading.Event()

        def deadline() -> None:
            expired.set()
            self.proc.kill()

        timer = threading.Timer(timeout, deadline)
        timer.daemon = True
        timer.start()
        try:
            code = self.proc.wait()
        finally:
            timer.cancel()
        if expired.is_set():
            self.cancel()
            raise RayLLMError(
                message=f"helm template did not finish in {timeout:.0f} s",
                fix="check the chart for template loops, or the machine for load",
            )
        texts = []
        for f in (self._out, self._err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
            f.close()
        return subprocess.CompletedProcess(self.cmd, code, texts[0], texts[1])

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self._out, self._err):
            f.close()


class HelmRender:
    """Starts ``helm template`` at once (lint, run); ``result()`` waits for it.

    ``-f -``: stdin is read once (within the values size limit) into a private
    temporary file for helm and put back as stdin for validate, so both see the
    same values and findings still name ``<stdin>``. A helm that cannot be found
    is reported only when the render is needed (values errors come first).
    Use as a context manager: an unused render is stopped and cleaned up.
    """

    def __init__(
        self, files: Sequence[Path], sets: Sequence[str], set_strings: Sequence[str], release: str, namespace: str
    ):
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._saved_stdin = None
        self.run: Optional[HelmRun] = None
        self.error: Optional[RayLLMError] = None
        helm_files = list(files)
        if any(str(f) == "-" for f in files):
            from .yaml_helm import max_values_file_bytes

            data = sys.stdin.buffer.read(max_values_file_bytes() + 1)
            self._tmp = tempfile.TemporaryDirectory(prefix="ray-llm-lint-")
            path = Path(self._tmp.name) / "stdin-values.yaml"
            path.write_bytes(data)
            self._saved_stdin = sys.stdin
            sys.stdin = io.TextIOWrapper(io.BytesIO(data))
            helm_files = [path if str(f) == "-" else f for f in files]
        try:
            self.run = HelmRun(helm_command(helm_files, sets, set_strings, release, namespace))
        except RayLLMError as exc:
            self.error = exc

    def result(self) -> subprocess.CompletedProcess:
        if self.run is None:
            raise self.error  # type: ignore[misc]
        return self.run.result()

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()

    def __enter__(self) -> "HelmRender":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.run is not None and self.run.proc.returncode is None:
            self.run.cancel()
        if self._saved_stdin is not None:
            sys.stdin = self._saved_stdin
        if self._tmp is not None:
            self._tmp.cleanup()
