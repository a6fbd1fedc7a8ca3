"""Generate ``charts/ray-llm/values.schema.json`` from :class:`ChartValues`.

Helm 3.17 validates with a draft-07 engine and ignores 2020-12 keywords, so the
output is written to mean the same under draft-07 and 2020-12:

* ``$defs`` becomes ``definitions`` (a ``$ref`` is a plain JSON pointer either way);
* a ``$ref`` never has siblings (draft-07 ignores them): it is wrapped in ``allOf``;
* ``$schema`` names draft-07.

Defaults are dropped: Helm merges the chart's ``values.yaml`` first, and a
schema ``default`` is never applied by Helm, so it would only be a second,
driftable copy of the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .values import ChartValues

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, val in node.items():
            if key in ("default", "title"):
                continue
            if key == "$defs":
                key = "definitions"
            out[key] = _rewrite(val)
        ref = out.get("$ref")
        if isinstance(ref, str):
            out["$ref"] = ref.replace("#/$defs/", "#/definitions/")
            if len(out) > 1:
                siblings = {k: v for k, v in out.items() if k != "$ref"}
                out = {"allOf": [{"$ref": out["$ref"]}], **siblings}
        # pydantic writes Optional[X] as anyOf[X, null]; keep it (valid draft-07).
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def build_values_schema() -> dict:
    """The chart's JSON schema as a dict (draft-07)."""
    raw = ChartValues.model_json_schema(by_alias=True, mode="validation")
    schema = _rewrite(raw)
    ordered = {"$schema": SCHEMA_DIALECT, "title": "ray-llm chart values"}
    ordered.update(schema)
    return ordered


def render_values_schema() -> str:
    """The file content: stable key order, 2-space indent, trailing newline."""
    return json.dumps(build_values_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def default_schema_path() -> Path:
    """``charts/ray-llm/values.schema.json`` of the checkout this package sits in."""
    return Path(__file__).resolve().parents[2] / "charts" / "ray-llm" / "values.schema.json"
