"""Fixtures of the runtime tests: a tiny local model and local Ray helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep Ray quiet and small on CI machines.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    from rayllm_runtime.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")
