"""`ray-llm run` as users run it: the console script in a subprocess, read line by line."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "rayllm_cli.main"]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServedRun:
    """A running `ray-llm run`: its output so far and the base URL it printed."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.output: List[str] = []
        self.base_url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.output.append(line)
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, marker: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line == "":
                raise AssertionError("ray-llm run exited before printing " + repr(marker) + ":\n"
                                     + "".join(self.output)[-4000:])
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} within {timeout_s:g} s:\n" + "".join(self.output)[-4000:])

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it to the process group; the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=180)


@contextlib.contextmanager
def served(args: Sequence[str], port: int, env: Optional[dict] = None, ready_timeout_s: float = 600) -> Iterator[ServedRun]:
    """Start `ray-llm run <args> --port <port>`, wait for "ready", yield it; kill it if still up."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(CLI + ["run", *args, "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = ServedRun(proc)
    try:
        ready = run.wait_for("ray-llm run: ready: ", ready_timeout_s)
        run.base_url = ready.split("ready: ", 1)[1].strip()
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
