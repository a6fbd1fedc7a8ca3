"""Copy ``runtime/rayllm_runtime`` into the chart (``charts/ray-llm/files/``).

Helm's ``.Files`` only sees files inside the chart, so the runtime the chart
ships in its ConfigMap is a generated copy; ``check`` fails when it is stale.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "runtime" / "rayllm_runtime"
PACKED = REPO / "charts" / "ray-llm" / "files" / "rayllm_runtime"


#: Modules for a workstation, never imported in the pods: tiny test models
#: (testing.py) and running a serveConfigV2 on a local Ray (local_run.py, used by
#: ``ray-llm run`` from the installed package). Left out of the ConfigMap, whose
#: every byte counts against the 256 KiB that client-side ``kubectl apply`` allows.
WORKSTATION_ONLY = frozenset({Path("testing.py"), Path("local_deploy.py")})


def source_files(root: Path = SOURCE) -> List[Path]:
    """The shipped files: Python sources only (no caches, no tests, no workstation-only modules)."""
    return sorted(
        rel
        for rel in (p.relative_to(root) for p in root.rglob("*.py") if "__pycache__" not in p.parts)
        if rel not in WORKSTATION_ONLY
    )


def differences(source: Path = SOURCE, packed: Path = PACKED) -> List[str]:
    """Relative paths that differ between the runtime and the chart's copy."""
    want = set(source_files(source))
    have = set(source_files(packed)) if packed.exists() else set()
    out = sorted(str(p) for p in want ^ have)
    for rel in sorted(want & have):
        if not filecmp.cmp(source / rel, packed / rel, shallow=False):
            out.append(str(rel))
    return out


def pack(source: Path = SOURCE, packed: Path = PACKED) -> List[str]:
    """Replace the chart's copy atomically (stage, then swap); return the files written."""
    staging = packed.with_name(packed.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
    files = source_files(source)
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, staging / rel)
    if packed.exists():
        shutil.rmtree(packed)
    staging.rename(packed)
    return [str(p) for p in files]
