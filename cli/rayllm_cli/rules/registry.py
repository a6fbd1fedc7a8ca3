"""The rule registry: one id per rule, run in id order by ``validate`` and ``lint``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

from ..errors import NOTICE, Finding
from .context import Context

RuleFn = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    fn: RuleFn
    #: The chart's template states this rule too (`ray-llm.validate.<id>` in _validate.tpl),
    #: for Helm-only users (Flux, Argo CD) who never run the CLI.
    in_template: bool = False


RULES: List[Rule] = []


def rule(rule_id: str, title: str, *, in_template: bool = False) -> Callable[[RuleFn], RuleFn]:
    def deco(fn: RuleFn) -> RuleFn:
        RULES.append(Rule(rule_id, title, fn, in_template))
        RULES.sort(key=lambda r: r.id)
        return fn

    return deco


def run_rules(ctx: Context, only: Optional[Sequence[str]] = None) -> List[Finding]:
    out: List[Finding] = []
    for r in RULES:
        if only and r.id not in only:
            continue
        try:
            out.extend(r.fn(ctx))
        except Exception as exc:  # a rule must never crash the CLI on odd input
            out.append(
                Finding(
                    rule=r.id,
                    severity=NOTICE,
                    path="",
                    message=f"rule {r.id} could not run on these values: {type(exc).__name__}: {exc}",
                )
            )
    return out
