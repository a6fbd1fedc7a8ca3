"""The runtime's modules import one way: no cycle, and each imports alone in a fresh interpreter.

Layers, bottom up: config, engines, openai.errors / openai.protocol -> model_routing ->
openai.serving / openai.transcription -> gateway_core -> openai.http_routes -> gateway ->
apps. A cycle (even one hidden in a function-level import) makes the import order decide
what works; the static graph below includes function-level imports for that reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[2] / "runtime" / "rayllm_runtime"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(_module_name(p) for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the rayllm_runtime modules it imports anywhere in its body (TYPE_CHECKING blocks excluded)."""
    graph: Dict[str, Set[str]] = {}
    for path in ROOT.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        name = _module_name(path)
        tree = ast.parse(path.read_text())
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for n in ast.walk(node))
        deps: Set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rayllm_runtime"):
                submodules = {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
                # `from pkg import submodule` depends on the submodule (a package's __init__ runs
                # before any of its submodules anyway); `from pkg import name` on the package.
                deps.update(submodules if len(submodules) == len(node.names) else submodules | {node.module})
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("rayllm_runtime"))
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def test_the_runtime_has_no_import_cycle():
    graph = import_graph()
    state: Dict[str, int] = {}
    cycles: List[List[str]] = []

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert cycles == [], cycles
    # the two pairs whose names used to say the same thing
    assert "rayllm_runtime.routing" not in MODULES and "rayllm_runtime.openai.router" not in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=180,
                          env={"VLLM_CONFIGURE_LOGGING": "0", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
