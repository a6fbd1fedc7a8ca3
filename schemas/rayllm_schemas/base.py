"""Shared bases for the chart's values models.

Two dialects live in one values file, on purpose:

* chart-level keys (tiers, head, serve, ...) use Helm's camelCase, like every
  other chart users know;
* model entries carry Ray Serve LLM's own config sections verbatim
  (``model_loading_config``, ``engine_kwargs``, ...) so a config from Ray's docs
  pastes in unchanged.

Both bases forbid unknown keys: a typo must fail at ``helm template`` time, not
become a silently ignored setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ChartModel(BaseModel):
    """Chart-owned settings: camelCase keys in values, snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


class RaySectionModel(BaseModel):
    """Sections copied from Ray Serve LLM's LLMConfig: Ray's own snake_case keys."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class OpenRaySectionModel(BaseModel):
    """A Ray section whose keys Ray grows release by release.

    We model the keys the chart reasons about and let the rest through; Ray's
    own ``LLMConfig`` (run by ``ray-llm lint`` and the tests) is the strict judge
    of those.
    """

    model_config = ConfigDict(extra="allow", validate_default=True)
