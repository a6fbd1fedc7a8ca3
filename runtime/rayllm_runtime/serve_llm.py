"""Ray's ``build_openai_app`` and ``build_llm_deployment``, fed only with verified, content-addressed model files.

The chart names every model file ``<model>.<sha256[:12]>.yaml`` and puts those
paths in serveConfigV2. A changed model therefore changes serveConfigV2 (so
KubeRay re-applies it), and the new name cannot hold old content. What remains
is kubelet's delay in projecting an updated ConfigMap into running pods: this
builder waits (bounded) until each file exists *and* its content hashes to the
name, then hands the parsed configs to Ray's own builder. It never reads a stale
file and never fails just because kubelet is a minute behind.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

logger = logging.getLogger("rayllm.serve_llm")

HASHED_NAME = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{12})\.ya?ml$")


class ConfigFileError(RuntimeError):
    """A model config file is missing, mis-hashed or unparsable after the wait."""


class VerifiedOpenAIAppArgs(BaseModel):
    """Args of :func:`build_openai_app` (the chart writes them)."""

    model_config = ConfigDict(extra="forbid")

    llm_configs: List[Union[str, Dict[str, Any]]] = Field(
        ..., min_length=1, description="Content-addressed YAML paths of Ray LLMConfigs (or inline dicts)."
    )
    config_wait_timeout_s: float = Field(
        300, ge=0, description="How long to wait for kubelet to project each file with the expected content."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Seconds between checks while waiting.")
    ingress_deployment_config: Dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Serve options of Ray's OpenAI ingress deployment (LLMServingArgs.ingress_deployment_config): the "
            "chart sets its placement here (num_cpus 0, pinned beside the proxy)."
        ),
    )


def content_digest(text: Union[str, bytes]) -> str:
    """The 12-hex-digit digest the chart puts into file names (Helm's ``sha256sum | trunc 12``)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:12]


def load_verified_config(
    path: Union[str, Path],
    *,
    timeout_s: float = 300,
    poll_interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    check_digest: bool = True,
) -> Dict[str, Any]:
    """Wait until ``path`` exists with content matching the digest in its name; return the parsed YAML.

    Files without a digest in their name are read as they are (hand-written
    serve configs); the chart never writes such names.
    """
    path = Path(path)
    match = HASHED_NAME.match(path.name) if check_digest else None
    deadline = clock() + timeout_s
    last_problem = "not checked yet"
    while True:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            last_problem = "the file does not exist yet"
        except OSError as exc:  # permissions, a half-swapped ..data symlink
            last_problem = f"the file cannot be read ({exc.__class__.__name__})"
        else:
            if match is None or content_digest(raw) == match.group("digest"):
                try:
                    parsed = yaml.safe_load(raw)
                except yaml.YAMLError as exc:
                    raise ConfigFileError(f"{path}: got invalid YAML ({exc}); expected a Ray LLMConfig") from None
                if not isinstance(parsed, dict):
                    raise ConfigFileError(f"{path}: got {type(parsed).__name__}; expected a YAML mapping")
                return parsed
            last_problem = (
                f"its content hashes to {content_digest(raw)}, not {match.group('digest')} "
                "(kubelet has not projected the new ConfigMap yet)"
            )
        if clock() >= deadline:
            raise ConfigFileError(
                f"{path}: {last_problem} after {timeout_s:.0f}s; expected the chart's ConfigMap to be mounted "
                "there; check the pod's volumes and raise serve.configWaitTimeoutS if kubelet syncs slowly"
            )
        logger.info("waiting for model config %s: %s", path, last_problem)
        sleep(poll_interval_s)


def resolve_llm_configs(args: VerifiedOpenAIAppArgs) -> List[Dict[str, Any]]:
    """Every entry of ``llm_configs`` as a dict, files verified."""
    out: List[Dict[str, Any]] = []
    for entry in args.llm_configs:
        if isinstance(entry, dict):
            out.append(entry)
        else:
            out.append(
                load_verified_config(entry, timeout_s=args.config_wait_timeout_s, poll_interval_s=args.poll_interval_s)
            )
    return out


def build_openai_app(args: VerifiedOpenAIAppArgs) -> Application:
    """Serve application builder: verify the files, then delegate to ``ray.serve.llm.build_openai_app``.

    Import path: ``rayllm_runtime.serve_llm:build_openai_app``. Called with a plain
    dict too (tests, direct use).
    """
    if not isinstance(args, VerifiedOpenAIAppArgs):
        args = VerifiedOpenAIAppArgs.model_validate(args)
    from ray.serve.llm import LLMConfig
    from ray.serve.llm import build_openai_app as ray_build_openai_app

    configs = [LLMConfig.model_validate(cfg) for cfg in resolve_llm_configs(args)]
    serving_args: Dict[str, Any] = {"llm_configs": configs}
    if args.ingress_deployment_config:
        serving_args["ingress_deployment_config"] = args.ingress_deployment_config
    return ray_build_openai_app(serving_args)


class VerifiedLLMAppArgs(BaseModel):
    """Args of :func:`build_llm_app` (the chart writes them): one model as its own application."""

    model_config = ConfigDict(extra="forbid")

    llm_config: Union[str, Dict[str, Any]] = Field(
        ..., description="Content-addressed YAML path of one Ray LLMConfig (or an inline dict)."
    )
    config_wait_timeout_s: float = Field(
        300, ge=0, description="How long to wait for kubelet to project the file with the expected content."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Seconds between checks while waiting.")
    verify_content_hash: bool = Field(
        True,
        description="Wait for content that hashes to the file name (serve.verifyMountedConfigs); off reads it once.",
    )


def build_llm_app(args: VerifiedLLMAppArgs) -> Application:
    """Serve application builder: one model as Ray's LLMServer (``ray.serve.llm.build_llm_deployment``).

    Import path: ``rayllm_runtime.serve_llm:build_llm_app``. The chart gives each model
    behind a gateway an application of its own, with no HTTP route: the gateway calls
    it through a Serve handle, and a change to one model redeploys that application
    alone (Serve versions a whole application by its config).
    """
    if not isinstance(args, VerifiedLLMAppArgs):
        args = VerifiedLLMAppArgs.model_validate(args)
    from ray.serve.llm import LLMConfig, build_llm_deployment

    entry = args.llm_config
    if isinstance(entry, dict):
        config = entry
    else:
        timeout = args.config_wait_timeout_s if args.verify_content_hash else 0
        config = load_verified_config(
            entry, timeout_s=timeout, poll_interval_s=args.poll_interval_s, check_digest=args.verify_content_hash
        )
    return build_llm_deployment(LLMConfig.model_validate(config))
