"""The chart README's values table, generated from the Pydantic models (``ray-llm docs``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Tuple, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from rayllm_schemas.values import ChartValues

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


def default_readme() -> Path:
    from .merge import chart_dir

    return chart_dir() / "README.md"


def _model_of(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if get_origin(ann) is Union:
        for a in get_args(ann):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return None


def _type_name(ann: Any) -> str:
    text = getattr(ann, "__name__", None) if get_origin(ann) is None else None
    text = text or str(ann).replace("typing.", "")
    return text.replace("NoneType", "null")


def rows(model: type = ChartValues, prefix: str = "") -> List[Tuple[str, str, str, str]]:
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        sub = _model_of(field.annotation)
        if sub is not None and name not in ("models",):
            out += rows(sub, key + ".")
            continue
        if field.default is not PydanticUndefined:
            default = json.dumps(field.default, default=str)
        elif field.default_factory is not None:
            try:
                val = field.default_factory()
                default = json.dumps(val.model_dump(by_alias=True) if isinstance(val, BaseModel) else val, default=str)
            except Exception:
                default = ""
        else:
            default = "(required)"
        out.append((key, _type_name(field.annotation), default, (field.description or "").replace("|", "\\|")))
    return out


def table() -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, typ, default, desc in rows():
        lines.append(f"| `{key}` | `{typ}` | `{default}` | {desc} |")
    return "\n".join(lines)


def update_readme(text: str) -> str:
    if START not in text or END not in text:
        return text.rstrip("\n") + f"\n\n## Values\n\n{START}\n{table()}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"
