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
from typing import TYPE_CHECKING, Any, List

from .values import ChartValues

if TYPE_CHECKING:
    from pydantic import BaseModel

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


# --------------------------------------------------------------------------- map-entry defaults
#
# Helm merges values.yaml under the user's values, so top-level defaults reach the
# templates through values.yaml. Entries of the maps keyed by name (tiers, models,
# llmApps, customApps) have no place in values.yaml: their defaults reach the
# templates through a generated template file instead, one define per entry kind,
# so the templates carry no default literals of their own and Helm renders exactly
# what the Pydantic models document.

#: values key -> (define name, model). The define holds the JSON of the entry's defaults.
MAP_ENTRY_DEFAULTS = (
    ("tiers", "ray-llm.defaults.tier", "TierValues"),
    ("models", "ray-llm.defaults.model", "ModelValues"),
    ("llmApps", "ray-llm.defaults.llmApp", "LLMAppValues"),
    ("customApps", "ray-llm.defaults.customApp", "CustomAppValues"),
)


def entry_defaults(model: type[BaseModel]) -> dict:
    """The defaults Pydantic fills into one entry of ``model`` (by alias; unset optional keys left out).

    A field with a default applies when its key is absent, whole: ``resources``
    given replaces the default resources rather than merging into them, as in Pydantic.
    """
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    out = {}
    for name, field in model.model_fields.items():
        if field.default is not PydanticUndefined:
            value = field.default
        elif field.default_factory is not None:
            value = field.get_default(call_default_factory=True)  # the factory's value (no validated data)
        else:
            continue  # required
        if isinstance(value, BaseModel):
            value = value.model_dump(by_alias=True, exclude_none=True)
        if value is None:
            continue
        out[field.alias or name] = value
    return out


def render_generated_template() -> str:
    """``charts/ray-llm/templates/_generated.tpl``: what the templates need from the Python side.

    The defaults of each map entry (JSON defines), the patterns of secrets
    (``secret_patterns``, shared with ``ray-llm validate``) and the ids of the rules the
    template states (``ray-llm.validate.<id>`` defines in _validate.tpl)."""
    from . import secret_patterns
    from . import values as values_module

    def define(name: str, data: object) -> List[str]:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        # Go's template parser would read "{{" in the text as the start of an action.
        text = text.replace("{{", "{\\u007b")
        return [f'{{{{- define "{name}" -}}}}', text, "{{- end -}}"]

    lines = [
        "{{/*",
        "GENERATED by `ray-llm schema` from schemas/rayllm_schemas (the values models, the secret",
        "patterns) and the CLI's rule registry: do not edit (CI fails when it differs from a fresh",
        "generation). Each define holds JSON.",
        "- ray-llm.defaults.<entry>: the defaults of one entry of a map keyed by name;",
        "  `ray-llm.entries.enabled` fills the keys an entry leaves out;",
        "- ray-llm.constants.*: the secret patterns, value patterns the rules share and the template's rule ids.",
        "*/}}",
    ]
    for _key, name, class_name in MAP_ENTRY_DEFAULTS:
        lines += define(name, entry_defaults(getattr(values_module, class_name)))
    lines += define(
        "ray-llm.constants.secrets",
        {
            "tokenFormats": [list(item) for item in secret_patterns.TOKEN_FORMATS],
            "envName": secret_patterns.SECRETISH_ENV_NAME,
            "pointerName": secret_patterns.SECRET_POINTER_NAME,
            "keyInJson": secret_patterns.SECRETISH_KEY_IN_JSON,
        },
    )
    lines += define(
        "ray-llm.constants.patterns",
        {
            "hubId": values_module.HUB_ID_PATTERN,
            "loraUri": values_module.LORA_URI_PATTERN,
        },
    )
    lines += define("ray-llm.constants.templateRules", template_rule_ids())
    return "\n".join(lines) + "\n"


def template_rule_ids() -> List[str]:
    """Ids of the rules the chart's template states too (the CLI's registry says which)."""
    try:
        from rayllm_cli.rules import RULES
    except ImportError:  # the schemas package alone (no CLI): nothing to list
        return []
    return [r.id for r in RULES if r.in_template]


def default_generated_template_path() -> Path:
    """``charts/ray-llm/templates/_generated.tpl`` of the checkout this package sits in."""
    return Path(__file__).resolve().parents[2] / "charts" / "ray-llm" / "templates" / "_generated.tpl"


def generated_files() -> list:
    """(path, fresh content) of every file generated from the values models."""
    from .docs_gen import default_values_yaml_path, render_values_yaml

    return [
        (default_schema_path(), render_values_schema()),
        (default_generated_template_path(), render_generated_template()),
        (default_values_yaml_path(), render_values_yaml()),
    ]
