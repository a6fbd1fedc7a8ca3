"""Cross-field rules over the merged values: one registry for ``validate`` and ``lint``.

Pydantic (rayllm_schemas) checks the shape of each value; a rule here states what one value
alone cannot say. Each rule has one id and one home, a module by concern; ``ray-llm rules``
lists them. Rules read the merged values as plain data (not the Pydantic models), so they still
run, and still point at the right path, when the schema check failed somewhere else. The chart
states the rules Helm-only users (Flux, Argo CD) must get (``in_template``) once more, one
define per rule id in templates/_validate.tpl; tests/cli/test_cli_agrees_with_helm.py keeps
the two in step.

=====  ============  ================================================================
RL001  references    models and apps name tiers, apps and gateways that exist and are enabled
RL002  routes        model ids, app names and route prefixes are unique, no shadowing
RL003  placement     engine parallelism / GPU share fit the tier's workers; accelerator_type is the tier's
RL004  placement     the tier's GPUs cover its models at min and max replicas
RL005  bounds        replica and request bounds are ordered
RL006  engine        engine_kwargs keys are vLLM engine arguments
RL007  engine        dtype and max_model_len suit the GPU and the model
RL008  runtime_env   runtime_env working_dir / py_modules are remote URIs
RL009  secrets       no secrets written inline in values
RL010  apps          custom app import_path is importable; args validate with the builder's model
RL011  versions      image tag and rayVersion name the same Ray release
RL012  versions      deprecated settings
RL013  routes        apps behind a gateway are not also reachable around it
RL014  placement     CPU-only replicas land on the head or the system group, never on a GPU tier
RL015  placement     every Ray group carries CPU and memory
RL016  kuberay       per-group idleTimeoutSeconds runs on autoscaler v2
RL017  kuberay       the RayService name KubeRay derives from the release is valid
RL018  kuberay       the incremental upgrade strategy is fully configured
RL019  serving       a model that loads from the model cache has the volume
RL020  serving       LoRA adapters are configured in one place, with vLLM's switches
RL021  serving       a request router Ray ships gets only the arguments it takes
=====  ============  ================================================================
"""

from __future__ import annotations

from . import (  # noqa: F401  (importing a module registers its rules)
    apps,
    bounds,
    engine,
    kuberay,
    placement,
    references,
    routes,
    runtime_env,
    secrets,
    serving,
    versions,
)
from .context import Context
from .registry import RULES, Rule, rule, run_rules
from .versions import deprecated_key_finding

__all__ = ["RULES", "Rule", "Context", "rule", "run_rules", "deprecated_key_finding"]
