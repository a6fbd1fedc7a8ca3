"""One stand-in for a vLLM Ray worker: holds one placement-group bundle's GPUs, loads nothing.

Kept apart from :mod:`fake_llm_server` so its worker processes import Ray only, not
Ray Serve LLM and vLLM.
"""

from __future__ import annotations

from typing import Any, Dict

import ray


@ray.remote(num_cpus=0)
class FakeGPUWorker:
    def __init__(self, bundle_index: int):
        self.bundle_index = bundle_index

    def where(self) -> Dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"bundle_index": self.bundle_index, "node_id": ctx.get_node_id(),
                "placement_group_id": ctx.get_placement_group_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
