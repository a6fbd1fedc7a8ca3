"""Strict configuration models for the runtime (application builder args).

Everything a user writes into a serveConfigV2 ``args:`` block lands in one of
these models, so typos fail at deploy time instead of being silently ignored.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Dict, List, Literal, Optional
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RuntimeConfigModel(BaseModel):
    """Base of every runtime config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class EngineKind(str, Enum):
    cpu = "cpu"
    vllm = "vllm"
    fake = "fake"


class ModelTask(str, Enum):
    generate = "generate"
    transcription = "transcription"


class CpuEngineOptions(RuntimeConfigModel):
    """Options of the transformers-based CPU engine (``engine_kwargs``)."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        default="float32", description="torch dtype the weights are loaded in; float32 is the safe CPU choice."
    )
    max_concurrency: int = Field(
        default=1, ge=1, description="Requests generated at the same time in one replica; more share the same cores."
    )
    torch_threads: Optional[int] = Field(
        default=None, ge=1, description="torch.set_num_threads for the replica; None leaves torch's default."
    )
    default_max_tokens: int = Field(
        default=256, ge=1, description="Completion length used when a request gives no max_tokens."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow model repos to run their own Python code (only for trusted sources)."
    )


class FakeEngineOptions(RuntimeConfigModel):
    """Options of the fake engine used for benchmarks and fault tests."""

    response: str = Field(
        default="This is a fake response from ray-llm.", description="Completion text returned for every request."
    )
    first_token_delay_s: float = Field(default=0.0, ge=0, description="Seconds to wait before the first delta.")
    token_delay_s: float = Field(default=0.0, ge=0, description="Seconds to wait between deltas (one per word).")
    fail: bool = Field(default=False, description="Raise an internal error on every request (fault injection).")


class AutoscalingOptions(RuntimeConfigModel):
    """The commonly used subset of Ray Serve's autoscaling_config."""

    min_replicas: int = Field(default=1, ge=0, description="Lower bound of replicas (0 allows scale to zero).")
    max_replicas: int = Field(default=1, ge=1, description="Upper bound of replicas.")
    initial_replicas: Optional[int] = Field(default=None, ge=0, description="Replicas started at deploy time.")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="In-flight requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(default=30.0, ge=0, description="Seconds of sustained load before scaling up.")
    downscale_delay_s: float = Field(default=600.0, ge=0, description="Seconds of low load before scaling down.")

    @model_validator(mode="after")
    def _check_bounds(self) -> "AutoscalingOptions":
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"got min_replicas={self.min_replicas} > max_replicas={self.max_replicas}; "
                "expected min_replicas <= max_replicas; lower min_replicas or raise max_replicas"
            )
        if self.initial_replicas is not None and not (self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError(
                f"got initial_replicas={self.initial_replicas}; expected a value between min_replicas "
                f"({self.min_replicas}) and max_replicas ({self.max_replicas}); adjust initial_replicas"
            )
        return self


class RayActorOptions(RuntimeConfigModel):
    """Resources of each replica's actor."""

    num_cpus: Optional[float] = Field(default=None, ge=0, description="CPUs reserved per replica.")
    num_gpus: Optional[float] = Field(
        default=None,
        ge=0,
        description="GPUs reserved per replica; a fraction (e.g. 0.5) lets several models share one GPU.",
    )
    memory: Optional[int] = Field(default=None, ge=0, description="Bytes of memory reserved per replica.")
    resources: Dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per replica (e.g. an accelerator label)."
    )
    accelerator_type: Optional[str] = Field(
        default=None, description="Ray accelerator type to schedule on (e.g. 'L4', 'A100')."
    )
    runtime_env: Optional[Dict[str, Any]] = Field(default=None, description="Ray runtime_env of the replica.")

    @field_validator("num_gpus")
    @classmethod
    def _fraction_or_whole(cls, value: Optional[float]) -> Optional[float]:
        if value is not None and value > 1 and not float(value).is_integer():
            raise ValueError(
                f"got num_gpus={value}; expected a fraction <= 1 or a whole number; "
                "use a fraction to share one GPU or whole GPUs per replica"
            )
        return value


class DeploymentOptions(RuntimeConfigModel):
    """Ray Serve deployment options for one deployment."""

    num_replicas: Optional[int] = Field(
        default=None, ge=1, description="Fixed replica count; leave unset when autoscaling_config is used."
    )
    autoscaling_config: Optional[AutoscalingOptions] = Field(
        default=None, description="Autoscaling bounds; mutually exclusive with num_replicas."
    )
    max_ongoing_requests: Optional[int] = Field(
        default=None, ge=1, description="Requests a replica accepts at once before Serve queues or rejects."
    )
    max_queued_requests: Optional[int] = Field(
        default=None, ge=-1, description="Requests queued per caller before Serve answers 503 (-1: unbounded)."
    )
    ray_actor_options: RayActorOptions = Field(
        default_factory=RayActorOptions, description="Per-replica resources (CPUs, fractional GPUs, memory)."
    )
    health_check_period_s: Optional[float] = Field(default=None, gt=0, description="Seconds between health checks.")
    health_check_timeout_s: Optional[float] = Field(default=None, gt=0, description="Health check deadline.")
    graceful_shutdown_timeout_s: Optional[float] = Field(
        default=None, ge=0, description="Seconds a replica may finish in-flight requests when stopping."
    )

    @model_validator(mode="after")
    def _replicas_xor_autoscaling(self) -> "DeploymentOptions":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError(
                f"got num_replicas={self.num_replicas} and autoscaling_config; expected only one of them; "
                "remove num_replicas to autoscale or remove autoscaling_config for a fixed count"
            )
        return self

    def to_serve_options(self) -> Dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        opts: Dict[str, Any] = {}
        for name in (
            "num_replicas",
            "max_ongoing_requests",
            "max_queued_requests",
            "health_check_period_s",
            "health_check_timeout_s",
            "graceful_shutdown_timeout_s",
        ):
            value = getattr(self, name)
            if value is not None:
                opts[name] = value
        if self.autoscaling_config is not None:
            opts["autoscaling_config"] = self.autoscaling_config.model_dump(exclude_none=True)
        actor = self.ray_actor_options.model_dump(exclude_none=True)
        if not actor.get("resources"):
            actor.pop("resources", None)
        if actor:
            opts["ray_actor_options"] = actor
        return opts


_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


class ModelConfig(RuntimeConfigModel):
    """One model served by its own Ray Serve deployment."""

    model_id: str = Field(description="Name clients send as the request's `model`; unique within a gateway.")
    engine: EngineKind = Field(
        default=EngineKind.vllm, description="Inference engine: vllm (GPU), cpu (transformers) or fake."
    )
    task: ModelTask = Field(
        default=ModelTask.generate,
        description=(
            "What the model does. generate: a text model served at /v1/chat/completions and "
            "/v1/completions. transcription: a Whisper-style speech-to-text model (encoder-decoder, "
            "e.g. openai/whisper-large-v3) served at /v1/audio/transcriptions only; the gateway answers "
            "400 when a model is sent to the other kind of endpoint. Not inferred from the weights "
            "because they may only be reachable inside the cluster."
        ),
    )
    model_source: Optional[str] = Field(
        default=None,
        description=(
            "Local path or Hugging Face repo id of the weights; defaults to model_id. Unused by the fake engine."
        ),
    )
    engine_kwargs: Dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Engine options: vLLM AsyncEngineArgs fields for vllm, CpuEngineOptions / FakeEngineOptions otherwise."
        ),
    )
    deployment: DeploymentOptions = Field(
        default_factory=DeploymentOptions, description="Ray Serve options of this model's deployment."
    )
    stream_batching_interval_ms: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description=(
            "Merge a streamed answer's deltas for up to this many milliseconds after each one sent (the first "
            "goes at once): fewer, larger messages through Serve, hence more tokens per second under load, for a "
            "coarser stream. 0 merges only what is ready when the gateway asks. 50, as Ray Serve LLM's own stream "
            "batching (`experimental_configs.stream_batching_interval_ms`) defaults to."
        ),
    )
    colocated: bool = Field(
        default=False,
        description=(
            "Run this model's engine inside the gateway's replicas instead of a deployment of its own: "
            "no second Serve hop per request (lower latency and CPU), but the model then scales with "
            "ingress_deployment, whose ray_actor_options must hold the engine's resources. At most one "
            "colocated model per gateway; leave `deployment` unset for it."
        ),
    )

    @field_validator("model_id")
    @classmethod
    def _check_model_id(cls, value: str) -> str:
        if not _MODEL_ID_RE.match(value):
            raise ValueError(
                f"got model_id={value!r}; expected 1-200 characters of letters, digits and ._:/@+- "
                "starting with a letter or digit; rename the model"
            )
        return value

    @model_validator(mode="after")
    def _check_engine(self) -> "ModelConfig":
        # Validate engine-specific options now so a typo fails at deploy time,
        # not inside a replica that then restarts forever.
        if self.engine == EngineKind.cpu:
            CpuEngineOptions.model_validate(self.engine_kwargs)
        elif self.engine == EngineKind.fake:
            FakeEngineOptions.model_validate(self.engine_kwargs)
        elif self.engine == EngineKind.vllm:
            gpus = self.deployment.ray_actor_options.num_gpus
            if gpus is not None and 0 < gpus < 1:
                util = self.engine_kwargs.get("gpu_memory_utilization")
                if util is None or float(util) > gpus:
                    raise ValueError(
                        f"got num_gpus={gpus} with gpu_memory_utilization={util}; expected "
                        f"gpu_memory_utilization <= {gpus} when sharing a GPU; set "
                        "engine_kwargs.gpu_memory_utilization so the models on one GPU fit together"
                    )
            tp = int(self.engine_kwargs.get("tensor_parallel_size", 1) or 1)
            pp = int(self.engine_kwargs.get("pipeline_parallel_size", 1) or 1)
            if tp * pp > 1:
                raise ValueError(
                    f"got tensor_parallel_size={tp}, pipeline_parallel_size={pp}; expected a single-GPU engine "
                    "in rayllm_runtime deployments; serve multi-GPU models with ray.serve.llm:build_openai_app "
                    "and route to it through `upstreams`"
                )
        if self.engine != EngineKind.fake and not (self.model_source or self.model_id):
            raise ValueError("got no model_source; expected a path or repo id; set model_source")
        return self

    @property
    def source(self) -> str:
        return self.model_source or self.model_id


class UpstreamConfig(RuntimeConfigModel):
    """Models served by another Serve application: reached through a Serve handle (``app``) or over
    HTTP (``base_url``)."""

    model_ids: List[str] = Field(min_length=1, description="Models served by this upstream.")
    app: Optional[str] = Field(
        default=None,
        description=(
            "Name of a Serve application in this cluster whose ingress is Ray's LLMServer (the chart's per-model "
            "apps behind a gateway, rayllm_runtime.serve_llm:build_llm_app). Called through a Serve handle: no "
            "HTTP route is needed, so the app can have none and nobody bypasses the gateway."
        ),
    )
    base_url: Optional[str] = Field(
        default=None,
        description="Base URL without /v1, e.g. http://127.0.0.1:8000/llm for an app with route_prefix /llm.",
    )
    lora_adapters: bool = Field(
        default=False,
        description=(
            "The upstream app's LLMServer serves LoRA adapters (Ray's lora_config): a request for "
            "`<model_id>:<adapter>` goes to it with Serve's multiplexed model id set to that name, as Ray's own "
            "OpenAI ingress sends it. Only with `app`."
        ),
    )
    timeout_s: float = Field(default=600.0, gt=0, description="Total timeout of one forwarded request.")
    api_key_env: Optional[str] = Field(
        default=None, description="Environment variable holding a bearer key to send upstream (never logged)."
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"got base_url={value!r}; expected an http(s) URL such as http://127.0.0.1:8000/llm; fix the URL"
            )
        value = value.rstrip("/")
        if value.endswith("/v1"):
            value = value[: -len("/v1")]
        return value

    @model_validator(mode="after")
    def _one_target(self) -> "UpstreamConfig":
        if self.lora_adapters and self.app is None:
            raise ValueError(
                "got lora_adapters with base_url; expected it only with `app` (an upstream over HTTP receives the "
                "request body as it is, adapter name included); remove lora_adapters"
            )
        if (self.app is None) == (self.base_url is None):
            raise ValueError(
                f"got app={self.app!r} and base_url={self.base_url!r}; expected exactly one of them; set `app` "
                "to a Serve application of this cluster or `base_url` to an HTTP server"
            )
        if self.app is not None and self.api_key_env:
            raise ValueError(
                "got api_key_env on an `app` upstream; expected it only with base_url (a Serve handle sends no "
                "HTTP headers); remove api_key_env"
            )
        return self


class GuardConfig(RuntimeConfigModel):
    """A guard (auth, rate limit) that is on as soon as it is configured.

    ``rate_limit: {requests_per_minute: 600}`` reads as "limit to 600 a minute", so
    settings without ``enabled`` switch the guard on; ``enabled: false`` keeps the
    settings and switches it off. Only an absent (or empty) block means off.
    """

    @model_validator(mode="before")
    @classmethod
    def _configured_means_on(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data and any(key != "enabled" for key in data):
            return {**data, "enabled": True}
        return data


class AuthConfig(GuardConfig):
    """Bearer API-key authentication."""

    enabled: bool = Field(
        default=False,
        description=(
            "Require `Authorization: Bearer <key>` on /v1 endpoints; on when `api_keys_path` is set "
            "unless `enabled: false`."
        ),
    )
    api_keys_path: Optional[str] = Field(
        default=None,
        description="File with one key per line, or a directory (a mounted Kubernetes Secret) whose files hold keys.",
    )
    reload_interval_s: float = Field(
        default=30.0, ge=0, description="How often the key files are re-read so rotated Secrets apply (0: never)."
    )

    @model_validator(mode="after")
    def _path_when_enabled(self) -> "AuthConfig":
        if self.enabled and not self.api_keys_path:
            raise ValueError(
                "got auth.enabled=true without api_keys_path; expected the path of a key file or Secret mount; "
                "set auth.api_keys_path or disable auth"
            )
        return self


class RateLimitConfig(GuardConfig):
    """Per-key token bucket (per ingress replica)."""

    enabled: bool = Field(
        default=False,
        description="Apply the limit; on when any limit is set unless `enabled: false`.",
    )
    requests_per_minute: float = Field(default=60.0, gt=0, description="Sustained requests per minute per key.")
    burst: int = Field(default=10, ge=1, description="Requests a key may make at once before being throttled.")


class AuditLogConfig(RuntimeConfigModel):
    """JSON audit lines on logger `rayllm.audit`."""

    enabled: bool = Field(default=True, description="Write one JSON line per /v1 request.")
    include_prompts: bool = Field(
        default=False, description="Also log prompt text (may contain personal data; off by default)."
    )


class IngressDeploymentOptions(RuntimeConfigModel):
    """Ray Serve options of the gateway ingress deployment."""

    num_replicas: Optional[int] = Field(default=None, ge=1, description="Fixed ingress replica count.")
    autoscaling_config: Optional[AutoscalingOptions] = Field(default=None, description="Ingress autoscaling bounds.")
    max_ongoing_requests: Optional[int] = Field(
        default=None, ge=1, description="Requests one ingress replica accepts at once."
    )
    ray_actor_options: RayActorOptions = Field(
        default_factory=lambda: RayActorOptions(num_cpus=0),
        description=(
            "Ingress replica resources (no GPU needed). `num_cpus` defaults to 0, as Ray's own LLM ingress "
            "router does: the ingress then fits beside the proxy on a head that advertises no CPUs, and "
            "`cpu_placement` pins it there (Serve would otherwise ask 1 CPU, which on a GPU-only cluster "
            "keeps a GPU node up for a CPU-only process)."
        ),
    )

    @model_validator(mode="after")
    def _replicas_xor_autoscaling(self) -> "IngressDeploymentOptions":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError(
                "got num_replicas and autoscaling_config for the ingress; expected only one; remove one of them"
            )
        return self

    def to_serve_options(self) -> Dict[str, Any]:
        return DeploymentOptions(
            num_replicas=self.num_replicas,
            autoscaling_config=self.autoscaling_config,
            max_ongoing_requests=self.max_ongoing_requests,
            ray_actor_options=self.ray_actor_options,
        ).to_serve_options()


class GatewayArgs(RuntimeConfigModel):
    """Args of ``rayllm_runtime.apps:build_gateway``."""

    models: List[ModelConfig] = Field(default_factory=list, description="Models deployed inside this application.")
    upstreams: List[UpstreamConfig] = Field(
        default_factory=list, description="Other OpenAI-compatible apps the gateway forwards models to."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API-key authentication.")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig, description="Per-key rate limit.")
    max_request_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description=(
            "Largest accepted request body in bytes (413 above); audio uploads to "
            "/v1/audio/transcriptions count too (16 kHz 16-bit mono WAV is about 1.9 MB per minute)."
        ),
    )
    audit_log: AuditLogConfig = Field(default_factory=AuditLogConfig, description="Audit log settings.")
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at GET /metrics.")
    ingress_deployment: IngressDeploymentOptions = Field(
        default_factory=IngressDeploymentOptions, description="Ray Serve options of the ingress deployment."
    )
    cpu_placement: Dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Custom Ray resources every CPU-only replica of this app asks for (the ingress, and models without "
            "GPUs), unless it sets `resources` itself. The chart sets it to a sliver of the head's resource "
            "(rayllm-head) or of the system group's (rayllm-system), so these replicas land beside a proxy "
            "and never on a GPU node."
        ),
    )

    @model_validator(mode="after")
    def _place_cpu_only_replicas(self) -> "GatewayArgs":
        if not self.cpu_placement:
            return self
        actor = self.ingress_deployment.ray_actor_options
        if not actor.resources and not actor.num_gpus:
            actor.resources = dict(self.cpu_placement)
        for model in self.models:
            options = model.deployment.ray_actor_options
            if not model.colocated and not options.resources and not options.num_gpus:
                options.resources = dict(self.cpu_placement)
        return self

    @model_validator(mode="after")
    def _unique_models(self) -> "GatewayArgs":
        seen: Dict[str, str] = {}
        for model in self.models:
            if model.model_id in seen:
                raise ValueError(
                    f"got model_id {model.model_id!r} twice in models; expected unique ids; rename or remove one"
                )
            seen[model.model_id] = "models"
        for index, upstream in enumerate(self.upstreams):
            for model_id in upstream.model_ids:
                if model_id in seen:
                    raise ValueError(
                        f"got model_id {model_id!r} in upstreams[{index}] and in {seen[model_id]}; expected each "
                        "model served once; remove the duplicate"
                    )
                seen[model_id] = f"upstreams[{index}]"
        if not seen:
            raise ValueError("got no models and no upstreams; expected at least one model; add an entry to models")
        return self

    @model_validator(mode="after")
    def _check_colocated(self) -> "GatewayArgs":
        colocated = [m for m in self.models if m.colocated]
        if len(colocated) > 1:
            raise ValueError(
                f"got colocated: true on {len(colocated)} models ({', '.join(m.model_id for m in colocated)}); "
                "expected at most one per gateway, since every gateway replica would load all of them; keep "
                "colocated on one and give the others their own deployment"
            )
        for model in colocated:
            if model.deployment.model_dump(exclude_defaults=True):
                raise ValueError(
                    f"got deployment settings on colocated model {model.model_id!r}; expected none, since it runs "
                    "inside the gateway's replicas; move them to ingress_deployment or set colocated: false"
                )
            gpus = self.ingress_deployment.ray_actor_options.num_gpus
            if model.engine == EngineKind.vllm:
                if not gpus:
                    raise ValueError(
                        f"got colocated vllm model {model.model_id!r} and ingress_deployment.ray_actor_options."
                        f"num_gpus={gpus}; expected a GPU for the engine; set ingress_deployment.ray_actor_options."
                        "num_gpus: 1 (and its accelerator_type/resources) or set colocated: false"
                    )
                util = model.engine_kwargs.get("gpu_memory_utilization")
                if gpus < 1 and (util is None or float(util) > gpus):
                    raise ValueError(
                        f"got ingress num_gpus={gpus} with gpu_memory_utilization={util} on colocated model "
                        f"{model.model_id!r}; expected gpu_memory_utilization <= {gpus}; set "
                        "engine_kwargs.gpu_memory_utilization"
                    )
        return self

    @property
    def model_ids(self) -> List[str]:
        ids = [m.model_id for m in self.models]
        for upstream in self.upstreams:
            ids.extend(upstream.model_ids)
        return ids


#: import path -> args model of each typed application builder. It lives here,
#: not in apps.py, so tooling (``ray-llm validate``) checks custom-app args with
#: the builders' own models without importing Ray Serve (seconds of start-up).
APP_ARGS_MODELS: Dict[str, type] = {
    "rayllm_runtime.apps:build_gateway": GatewayArgs,
}
