"""Parent of one fake Ray cluster: every process of that cluster, and only those, descend from it.

Run as ``python cluster_supervisor.py <ray start argv...>``. It makes itself a child
subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so the daemons ``ray start`` leaves behind
(GCS, raylet, the autoscaler monitor, the fake worker nodes the monitor launches, and
every worker process of those nodes) are re-parented to it rather than to init. On
SIGTERM it ends exactly those descendants (by pid: SIGTERM, then SIGKILL) and exits.
Nothing here looks processes up by name: ``ray stop --force`` (what Ray's own
``AutoscalingCluster`` runs) would also kill any other Ray on this machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36
_stop = False


def _on_term(signum, frame):  # noqa: ARG001
    global _stop
    _stop = True


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _end_descendants(grace_s: float = 1.5) -> None:
    """SIGTERM, then SIGKILL after a short grace: the cluster is thrown away, and gcs_server,
    raylet and the runtime-env agents take well over 6 s to leave on SIGTERM (measured);
    ``ray stop --force`` sends SIGKILL straight away."""
    me = psutil.Process()
    for _ in range(3):  # children may spawn more while going down: sweep again
        procs = me.children(recursive=True)
        if not procs:
            return
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + grace_s
        alive = procs
        while alive and time.monotonic() < deadline:
            _reap()
            _, alive = psutil.wait_procs(alive, timeout=0.2)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=3)
        _reap()


def main(argv) -> int:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("SUPERVISOR-ERROR prctl(PR_SET_CHILD_SUBREAPER) failed", flush=True)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    parent = os.getppid()
    rc = subprocess.call(argv)
    print(f"SUPERVISOR-STARTED {rc}", flush=True)
    if rc != 0:
        _end_descendants()
        return rc
    while not _stop and os.getppid() == parent:  # the test process died (e.g. killed by a CI timeout): clean up
        _reap()
        time.sleep(0.5)
    _end_descendants()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
