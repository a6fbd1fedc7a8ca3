"""The chart README's values table, generated from the Pydantic models (``ray-llm docs``;
rayllm_schemas.docs_gen walks them, as it does for values.yaml)."""

from __future__ import annotations

from pathlib import Path

from rayllm_schemas.docs_gen import table

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


def default_readme() -> Path:
    from .merge import chart_dir

    return chart_dir() / "README.md"


def update_readme(text: str) -> str:
    if START not in text or END not in text:
        return text.rstrip("\n") + f"\n\n## Values\n\n{START}\n{table()}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"
