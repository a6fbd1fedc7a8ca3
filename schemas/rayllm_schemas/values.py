"""Pydantic models of ``charts/ray-llm`` values: the one source of truth.

``values.schema.json`` is generated from :class:`ChartValues` (``ray-llm schema``)
and the chart README's values table too. Field descriptions are the docs.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from .base import ChartModel, OpenRaySectionModel, RaySectionModel

# Tier names become KubeRay group names, pod-name parts and Ray resource names.
TIER_NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$"
# Model keys become ConfigMap data keys and file names.
MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
# Family and app names become parts of ConfigMap / Serve app names.
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$"
ROUTE_PREFIX_PATTERN = r"^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*[:.][A-Za-z_][A-Za-z0-9_]*$"
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# Ray releases the chart supports: 2.59.0 and newer. Ray Serve LLM's config API
# (LLMConfig.placement_group_config with bundle_per_worker, which the chart renders)
# is stable from 2.59; older releases refuse those fields, so every LLM app would
# fail to deploy. A regular expression (not a version compare) so that Helm's own
# values.schema.json check states the same floor under draft-07 and 2020-12.
MIN_RAY_VERSION = "2.59.0"
RAY_VERSION_PATTERN = r"^(2\.(59|[6-9][0-9]|[1-9][0-9]{2,})|([3-9]|[1-9][0-9]+)\.(0|[1-9][0-9]*))\.(0|[1-9][0-9]*)$"
# The Ray release the project tests against, and the chart's default image.
DEFAULT_RAY_VERSION = "2.60.0"

# The prefix of the custom Ray resource each tier's workers advertise; model
# bundles ask for a sliver of it so they land only on that tier.
TIER_RESOURCE_PREFIX = "rayllm-tier-"
# Custom Ray resources of the head and of the optional CPU system group. A CPU-only
# replica (an ingress, a CPU-engine model) asks for a sliver of one of them, so it
# lands beside the proxy on the head (or on the system group) and never keeps a GPU
# node up, whichever node happens to have a free CPU.
HEAD_RESOURCE = "rayllm-head"
SYSTEM_RESOURCE = "rayllm-system"
# What one replica asks of a placement resource: every node declares 1, so up to
# 1,000 replicas fit on one node; CPUs and memory are what really limit them.
PLACEMENT_SLIVER = 0.001
# The worker group name of the system group (tiers may not use it).
SYSTEM_GROUP_NAME = "system"
# Kubernetes int32 fields (replica counts, seconds) top out here.
INT32_MAX = 2**31 - 1
# The URI schemes Ray Serve LLM loads LoRA adapters from (LoraConfig refuses any other).
LORA_URI_PATTERN = r"^(s3|gs|abfss|azure)://[^/]+(/.*)?$"
# The LoRA ranks vLLM accepts for max_lora_rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# A Hugging Face repo id (org/name or name), as the pre-pull Job downloads it.
HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"

Quantity = Union[int, float, str]


def tier_resource_name(tier: str) -> str:
    """The custom Ray resource that pins work to ``tier``."""
    return f"{TIER_RESOURCE_PREFIX}{tier}"


# --------------------------------------------------------------------------
# Kubernetes-shaped pieces (kept loose where Kubernetes' own schema is the judge)
# --------------------------------------------------------------------------


#: A PersistentVolumeClaim access mode (Kubernetes spelling).
AccessMode = Literal["ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _read_write_many() -> List[AccessMode]:
    return ["ReadWriteMany"]


class ResourceList(ChartModel):
    """A container's cpu/memory (and extended resources) quantities."""

    cpu: Optional[Quantity] = Field(None, description="CPU quantity, e.g. `4` or `500m`.")
    memory: Optional[str] = Field(None, description="Memory quantity, e.g. `16Gi`.", pattern=QUANTITY_PATTERN)
    ephemeral_storage: Optional[str] = Field(
        None,
        alias="ephemeral-storage",
        description="Ephemeral storage quantity, e.g. `50Gi`.",
        pattern=QUANTITY_PATTERN,
    )


class ContainerResources(ChartModel):
    """Requests and limits of a Ray container. GPUs are set by the chart from `gpusPerWorker`."""

    requests: ResourceList = Field(default_factory=ResourceList, description="Resource requests.")
    limits: ResourceList = Field(default_factory=ResourceList, description="Resource limits.")


class SecretKeyRef(ChartModel):
    """A reference to one key of a Kubernetes Secret (never the value itself)."""

    secret_name: str = Field("", description="Name of the Secret; empty disables the reference.")
    secret_key: str = Field("token", description="Key inside the Secret.")
    optional: bool = Field(False, description="Let pods start when the Secret is missing.")


# --------------------------------------------------------------------------
# Cluster shape
# --------------------------------------------------------------------------


class SecretMount(ChartModel):
    """A Secret mounted read-only into every Ray pod (e.g. API keys for the gateway app)."""

    name: str = Field(..., pattern=DNS_LABEL_PATTERN, description="Volume name.")
    secret_name: str = Field(..., min_length=1, description="Secret to mount.")
    mount_path: str = Field(..., pattern=r"^/", description="Absolute mount path in the containers.")


class ImageValues(ChartModel):
    """The Ray image shared by head and workers."""

    repository: str = Field("rayproject/ray-llm", description="Image repository.")
    tag: str = Field(
        f"{DEFAULT_RAY_VERSION}-py311-cu128",
        description="Image tag. Its leading Ray version must equal `rayVersion` (checked by `ray-llm validate`).",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", description="Image pull policy.")


class AutoscalerOptions(ChartModel):
    """KubeRay's in-tree autoscaler sidecar settings."""

    version: Literal["v1", "v2"] = Field(
        "v2",
        description=(
            "`autoscalerOptions.version`. `v2` (Ray's default under KubeRay since 2.49) is written out: "
            "with the version unset KubeRay keeps workers' `restartPolicy: Always`, which keeps the autoscaler "
            "from reclaiming idle workers, and it refuses per-tier `idleTimeoutSeconds` unless the version is v2."
        ),
    )
    idle_timeout_seconds: int = Field(
        60, ge=0, le=INT32_MAX, description="Seconds a worker sits idle before it is removed."
    )
    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] = Field(
        "Default", description="How fast the autoscaler adds workers."
    )


INCREMENTAL_UPGRADE = "NewClusterWithIncrementalUpgrade"


class IncrementalUpgradeValues(ChartModel):
    """KubeRay's `clusterUpgradeOptions` for `upgradeStrategy: NewClusterWithIncrementalUpgrade`.

    The new cluster grows in steps while the old one shrinks, so an upgrade needs at most
    `maxSurgePercent` of the serving capacity on top, instead of a second full cluster. Traffic
    moves through a Gateway API Gateway (`<rayservice>-gateway`) and HTTPRoute that KubeRay makes.
    """

    gateway_class_name: str = Field(
        "",
        description=(
            "GatewayClass of the Gateway KubeRay creates for the traffic split (e.g. `istio`, `eg` for Envoy "
            "Gateway, `gke-l7-rilb`). Required with the incremental strategy: the cluster needs the Gateway API "
            "CRDs and a controller for this class."
        ),
    )
    step_size_percent: int = Field(
        25,
        ge=1,
        le=100,
        description="Share of traffic moved to the new cluster at each step (at most maxSurgePercent).",
    )
    interval_seconds: int = Field(60, ge=1, le=INT32_MAX, description="Seconds between two traffic steps.")
    max_surge_percent: int = Field(
        25,
        ge=1,
        le=100,
        description=(
            "Capacity the new cluster may add beyond 100% at a time (KubeRay's own default is 100, a full "
            "second cluster; 25 caps an upgrade's extra GPUs at about a quarter of the serving ones)."
        ),
    )


class RayServiceValues(ChartModel):
    """Settings of the RayService object itself."""

    upgrade_strategy: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = Field(
        "NewCluster",
        description=(
            "`spec.upgradeStrategy.type`: `NewCluster` starts a whole new RayCluster on cluster-spec changes and "
            "switches traffic when its apps run (zero downtime, needs capacity for both at once); "
            "`NewClusterWithIncrementalUpgrade` grows the new cluster in steps while the old one shrinks "
            "(KubeRay >= 1.5 with its RayServiceIncrementalUpgrade gate, default on from 1.7; needs the Gateway API "
            "and `incrementalUpgrade`); `None` never replaces the cluster (cluster-spec changes are not applied)."
        ),
    )
    incremental_upgrade: IncrementalUpgradeValues = Field(
        default_factory=IncrementalUpgradeValues,
        description="Settings of the incremental strategy (`spec.upgradeStrategy.clusterUpgradeOptions`).",
    )
    enable_in_tree_autoscaling: bool = Field(
        True, description="Run KubeRay's autoscaler so tiers scale between minReplicas and maxReplicas (and from zero)."
    )
    autoscaler_options: AutoscalerOptions = Field(default_factory=AutoscalerOptions, description="Autoscaler settings.")
    annotations: Dict[str, str] = Field(default_factory=dict, description="Extra annotations on the RayService.")
    labels: Dict[str, str] = Field(default_factory=dict, description="Extra labels on the RayService.")


class PodPlacement(ChartModel):
    """Kubernetes scheduling knobs shared by head and tiers."""

    node_selector: Dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: List[Dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    affinity: Dict[str, Any] = Field(default_factory=dict, description="Pod affinity.")
    env: List[Dict[str, Any]] = Field(
        default_factory=list,
        description="Extra container env (Kubernetes EnvVar objects); secrets only via `valueFrom.secretKeyRef`.",
    )
    ray_start_params: Dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra `ray start` flags (strings). The chart owns `num-cpus`, `num-gpus`, `memory`, `resources` and "
            "`object-store-memory`: it declares each group's Ray resources in the group's `resources` field."
        ),
    )
    pod_annotations: Dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    pod_labels: Dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")

    @field_validator("ray_start_params")
    @classmethod
    def _chart_owned_params(cls, value: Dict[str, str]) -> Dict[str, str]:
        # The chart declares each group's Ray resources in the group's `resources` map, and
        # KubeRay refuses a group that also sets num-cpus, num-gpus, memory or resources in
        # rayStartParams (validateRayGroupResources, KubeRay >= 1.5).
        owned = sorted({"num-cpus", "num-gpus", "memory", "resources", "object-store-memory"} & set(value))
        if owned:
            raise ValueError(
                f"got rayStartParams {owned}; expected none of the chart-owned flags; "
                "set numCpus / gpusPerWorker / objectStoreMemory or the container resources instead "
                "(the chart declares the group's Ray resources itself)"
            )
        return value


class HeadValues(PodPlacement):
    """The Ray head: Serve controller, proxy and dashboard. It never gets a GPU (`num-gpus: "0"`)."""

    resources: ContainerResources = Field(
        default_factory=lambda: ContainerResources(
            requests=ResourceList(cpu="2", memory="8Gi"), limits=ResourceList(cpu="4", memory="16Gi")
        ),
        description="Head container requests and limits.",
    )
    object_store_memory: Optional[int] = Field(
        None, ge=78643200, description="Object store bytes on the head (`object-store-memory`); unset lets Ray decide."
    )
    num_cpus: Optional[int] = Field(
        None,
        ge=0,
        description="CPUs the head advertises to Ray; `0` keeps replicas off the head (the proxy still runs there).",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Type of KubeRay's head Service (dashboard, GCS, client)."
    )


class TierValues(PodPlacement):
    """One GPU worker group. Models name a tier; the chart pins their GPU bundles to it."""

    disabled: bool = Field(False, description="Leave this tier out of the rendered RayService.")
    accelerator_type: str = Field(
        ...,
        min_length=1,
        description=(
            "Ray accelerator type of this tier's GPUs (`T4`, `L4`, `A10G`, `A100-40G`, `A100-80G`, `H100`, ...). "
            "Declared on the workers as `accelerator_type:<X>` and set on every model placed here."
        ),
    )
    gpus_per_worker: int = Field(1, ge=1, le=16, description="GPUs per worker pod (`nvidia.com/gpu` and `num-gpus`).")
    gpu_memory_gi_b: Optional[float] = Field(
        None,
        alias="gpuMemoryGiB",
        gt=0,
        description="Memory of one GPU in GiB, for `ray-llm plan`; derived from acceleratorType when unset.",
    )
    gpu_resource_name: str = Field("nvidia.com/gpu", description="Kubernetes extended resource that carries the GPUs.")
    # le=INT32_MAX: KubeRay's worker group counts are int32; a larger number
    # passes YAML and Helm but the API server rejects the RayService.
    min_replicas: int = Field(
        0, ge=0, le=INT32_MAX, description="Fewest workers; `0` scales the tier to zero when idle."
    )
    max_replicas: int = Field(1, ge=0, le=INT32_MAX, description="Most workers the autoscaler may start.")
    replicas: Optional[int] = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="Workers at creation; defaults to minReplicas (the autoscaler owns it afterwards).",
    )
    idle_timeout_seconds: Optional[int] = Field(
        None,
        ge=0,
        description="Per-tier idle timeout before the autoscaler removes a worker (overrides the global one).",
    )
    object_store_memory: Optional[int] = Field(
        None, ge=78643200, description="Object store bytes per worker (`object-store-memory`)."
    )
    resources: ContainerResources = Field(
        default_factory=lambda: ContainerResources(
            requests=ResourceList(cpu="4", memory="16Gi"), limits=ResourceList(cpu="8", memory="32Gi")
        ),
        description="Worker container cpu/memory requests and limits (GPUs come from gpusPerWorker).",
    )
    pytorch_cuda_alloc_conf: str = Field(
        "expandable_segments:True",
        description="`PYTORCH_CUDA_ALLOC_CONF` on the workers (fewer OOMs from fragmentation).",
    )
    spot: bool = Field(
        False, description="Workers run on spot/preemptible nodes: marks the group so cost reports and alerts can tell."
    )
    model_cache: bool = Field(
        True,
        description=(
            "Mount the model cache volume (`modelCache`) on this tier's workers when a model placed here loads from "
            "it. `false` keeps it off (e.g. a node pool where the volume cannot attach); a cached model may then "
            "not be placed here (checked by `ray-llm validate`)."
        ),
    )


class SystemGroupValues(PodPlacement):
    """An optional CPU worker group for the CPU-only replicas (ingresses, CPU-engine models)."""

    enabled: bool = Field(
        False,
        description=(
            "Render the `system` worker group and pin every CPU-only replica to it (with the "
            "`rayllm-system` resource); off, they are pinned to the head beside the proxy."
        ),
    )
    min_replicas: int = Field(0, ge=0, le=INT32_MAX, description="Fewest system workers.")
    max_replicas: int = Field(2, ge=0, le=INT32_MAX, description="Most system workers.")
    idle_timeout_seconds: Optional[int] = Field(
        None, ge=0, description="Idle timeout of system workers (overrides the global one; needs autoscaler v2)."
    )
    object_store_memory: Optional[int] = Field(
        None, ge=78643200, description="Object store bytes per system worker (`object-store-memory`)."
    )
    resources: ContainerResources = Field(
        default_factory=lambda: ContainerResources(
            requests=ResourceList(cpu="2", memory="8Gi"), limits=ResourceList(cpu="4", memory="16Gi")
        ),
        description="System worker container cpu/memory requests and limits (no GPU).",
    )


# --------------------------------------------------------------------------
# Model weights cache
# --------------------------------------------------------------------------


class PrePullValues(ChartModel):
    """A Job that downloads the cached models' weights into the cache volume."""

    enabled: bool = Field(
        True,
        description=(
            "Render the pre-pull Job (`<release>-prepull-<hash>`: a new name whenever the list of cached models "
            "changes, so an upgrade starts a new Job instead of editing an immutable one)."
        ),
    )
    image: str = Field(
        "", description="Image of the download container; empty uses the Ray image (it has `huggingface_hub`)."
    )
    ignore_patterns: List[str] = Field(
        default_factory=lambda: ["original/*"],
        description="Files not to download (glob patterns), e.g. the duplicate `original/` checkpoints of Llama repos.",
    )
    backoff_limit: int = Field(3, ge=0, le=100, description="Retries of the Job's pod before it is marked failed.")
    active_deadline_seconds: Optional[int] = Field(
        None, ge=1, le=INT32_MAX, description="Give up after this many seconds (unset: no deadline)."
    )
    ttl_seconds_after_finished: Optional[int] = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description=(
            "Delete the finished Job after this many seconds. Unset keeps it: GitOps tools (Argo CD, Flux) would "
            "otherwise see it missing and run it again."
        ),
    )
    resources: ContainerResources = Field(
        default_factory=lambda: ContainerResources(
            requests=ResourceList(cpu="1", memory="2Gi"), limits=ResourceList(cpu="2", memory="4Gi")
        ),
        description="Requests and limits of the download container.",
    )
    node_selector: Dict[str, str] = Field(default_factory=dict, description="nodeSelector of the Job's pod.")
    tolerations: List[Dict[str, Any]] = Field(default_factory=list, description="Tolerations of the Job's pod.")


class ModelCacheValues(ChartModel):
    """A volume of model weights shared by the workers, so a replica (even one scaled from zero) loads
    from local disk instead of the Hugging Face Hub."""

    enabled: bool = Field(False, description="Use a model cache volume.")
    existing_claim: str = Field(
        "", description="Name of an existing PersistentVolumeClaim to use; empty makes one (`<release>-model-cache`)."
    )
    size: str = Field("200Gi", pattern=QUANTITY_PATTERN, description="Size of the claim the chart makes.")
    storage_class_name: Optional[str] = Field(
        None,
        description=(
            "StorageClass of the claim the chart makes (a ReadWriteMany class such as EFS, Filestore or "
            "Azure Files); unset uses the cluster's default class."
        ),
    )
    access_modes: List[AccessMode] = Field(
        default_factory=_read_write_many,
        min_length=1,
        description=(
            "Access modes of the claim the chart makes. Workers of several nodes mount it at once, so "
            "ReadWriteMany; ReadWriteOnce only works while every worker shares one node."
        ),
    )
    mount_path: str = Field(
        "/models",
        pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$",
        description=(
            "Where the workers (read-only) and the pre-pull Job see the volume. A cached model's weights are at "
            "`<mountPath>/<Hub id>`; a model_source under this path loads from the volume."
        ),
    )
    keep_on_uninstall: bool = Field(
        True,
        description="Annotate the claim the chart makes with `helm.sh/resource-policy: keep` (the weights survive "
        "`helm uninstall`).",
    )
    pre_pull: PrePullValues = Field(default_factory=PrePullValues, description="The Job that fills the cache.")


# --------------------------------------------------------------------------
# Serve
# --------------------------------------------------------------------------


class ServiceValues(ChartModel):
    """The chart's Service in front of the Serve proxies (port 8000)."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", description="Service type.")
    port: int = Field(8000, ge=1, le=65535, description="Service port.")
    annotations: Dict[str, str] = Field(
        default_factory=dict, description="Service annotations (e.g. cloud LB settings)."
    )
    load_balancer_source_ranges: List[str] = Field(
        default_factory=list, description="CIDRs allowed to reach a LoadBalancer Service."
    )


class IngressTLS(ChartModel):
    """One TLS entry of the Ingress."""

    secret_name: str = Field(..., description="TLS Secret name.")
    hosts: List[str] = Field(default_factory=list, description="Hosts covered by the certificate.")


class IngressValues(ChartModel):
    """Optional Ingress to the serve Service."""

    enabled: bool = Field(False, description="Render an Ingress.")
    class_name: str = Field("", description="IngressClass name.")
    host: str = Field("", description="Host name; empty matches all hosts.")
    path: str = Field("/", description="Path prefix routed to Serve.")
    annotations: Dict[str, str] = Field(default_factory=dict, description="Ingress annotations.")
    tls: List[IngressTLS] = Field(default_factory=list, description="TLS settings.")


class ServeValues(ChartModel):
    """Ray Serve settings shared by all applications."""

    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = Field(
        "EveryNode", description="Where Serve runs HTTP proxies."
    )
    port: int = Field(8000, ge=1, le=65535, description="Serve HTTP port in the pods.")
    request_timeout_s: Optional[float] = Field(
        None, gt=0, description="Serve's end-to-end request timeout (`http_options.request_timeout_s`)."
    )
    keep_alive_timeout_s: Optional[int] = Field(
        None, gt=0, description="Proxy keep-alive timeout (`http_options.keep_alive_timeout_s`)."
    )
    verify_mounted_configs: bool = Field(
        True,
        description=(
            "Build LLM apps through `rayllm_runtime.serve_llm:build_openai_app`, which waits until kubelet has "
            "projected the content-addressed model files and checks their hash before calling Ray's "
            "`build_openai_app`. `false` calls `ray.serve.llm:build_openai_app` directly."
        ),
    )
    config_wait_timeout_s: int = Field(
        300, ge=0, le=3600, description="How long an LLM app build waits for its model files to appear."
    )
    service: ServiceValues = Field(default_factory=ServiceValues, description="The serve Service.")
    ingress: IngressValues = Field(default_factory=IngressValues, description="Optional Ingress.")


class RuntimePackaging(ChartModel):
    """How the `rayllm_runtime` package reaches the pods."""

    mode: Literal["configMap", "image"] = Field(
        "configMap",
        description=(
            "`configMap`: the chart ships the runtime source in a ConfigMap on PYTHONPATH (works with the stock "
            "image); `image`: the image already has `rayllm_runtime` installed (see `runtime/Dockerfile`)."
        ),
    )


class LLMAppValues(ChartModel):
    """One `build_openai_app` application: an OpenAI-compatible route serving the models that name it."""

    disabled: bool = Field(False, description="Leave this app (and it alone) out of serveConfigV2.")
    route_prefix: Optional[str] = Field(
        None,
        pattern=ROUTE_PREFIX_PATTERN,
        description="HTTP route prefix, e.g. `/falcon`: Ray's `build_openai_app` serves the app's models there.",
    )
    gateway: Optional[str] = Field(
        None,
        pattern=DNS_LABEL_PATTERN,
        description=(
            "Serve this app's models only through this `customApps` gateway (`rayllm_runtime.apps:build_gateway`) "
            "instead of on a route: each model becomes its own Serve application with no HTTP route, which the "
            "gateway calls through a Serve handle (so its auth and limits cannot be bypassed) and which Serve "
            "redeploys alone when that model changes. Set either `routePrefix` or `gateway`."
        ),
    )


# --------------------------------------------------------------------------
# Model entries: Ray Serve LLM's LLMConfig sections, verbatim
# --------------------------------------------------------------------------


class ModelLoadingConfig(RaySectionModel):
    """Ray's `model_loading_config`."""

    model_id: str = Field(..., min_length=1, description="The id clients send as `model`.")
    model_source: Optional[Union[str, Dict[str, Any]]] = Field(
        None, description="Hugging Face id, local path or cloud mirror config; defaults to model_id."
    )
    tokenizer_source: Optional[str] = Field(None, description="Tokenizer source when it differs from model_source.")


class LoraValues(ChartModel):
    """Multi-LoRA serving of one base model: Ray Serve LLM's `lora_config` and the vLLM switches it needs."""

    dynamic_lora_loading_path: str = Field(
        ...,
        pattern=LORA_URI_PATTERN,
        description=(
            "Bucket folder holding one sub-folder per adapter (`adapter_config.json` + weights), e.g. "
            "`s3://my-bucket/loras/qwen-7b`. Ray Serve LLM loads only from s3://, gs://, abfss:// or azure://; "
            "requests name an adapter as `model: <model_id>:<adapter folder>`."
        ),
    )
    max_adapters_per_replica: int = Field(
        16, ge=1, le=1024, description="Adapters one replica keeps loaded (Ray's max_num_adapters_per_replica; LRU)."
    )
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = Field(
        16, description="Largest adapter rank the engine accepts (vLLM `max_lora_rank`; memory grows with it)."
    )
    max_loras_per_batch: int = Field(
        4, ge=1, le=1024, description="Adapters active in one batch on the GPU (vLLM `max_loras`)."
    )
    download_timeout_s: Optional[float] = Field(
        None, gt=0, description="Seconds one adapter download may take (Ray's default: 30)."
    )


class RequestRouterConfig(OpenRaySectionModel):
    """Ray Serve's `request_router_config`: how handles pick the replica of this model for a request."""

    request_router_class: str = Field(
        ...,
        pattern=IMPORT_PATH_PATTERN,
        description=(
            "Import path of the router, e.g. `ray.serve.llm.request_router:PrefixCacheAffinityRouter` (requests "
            "that share a prompt prefix go to the replica that has it cached). Serve's default is power of two "
            "choices."
        ),
    )
    request_router_kwargs: Dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the router's initialize_state (JSON values)."
    )


class AutoscalingConfig(OpenRaySectionModel):
    """Ray Serve's `autoscaling_config` (the keys the chart checks; others pass to Ray)."""

    min_replicas: Optional[int] = Field(None, ge=0, description="Fewest replicas (0 = scale to zero).")
    max_replicas: Optional[int] = Field(None, ge=1, description="Most replicas.")
    initial_replicas: Optional[int] = Field(None, ge=0, description="Replicas at deploy time.")
    target_ongoing_requests: Optional[float] = Field(None, gt=0, description="Ongoing requests per replica to aim for.")


class DeploymentConfig(OpenRaySectionModel):
    """Ray Serve's `deployment_config` for the model's LLM server."""

    autoscaling_config: Optional[AutoscalingConfig] = Field(None, description="Replica autoscaling.")
    num_replicas: Optional[Union[int, Literal["auto"]]] = Field(None, description="Fixed replica count.")
    max_ongoing_requests: Optional[int] = Field(None, ge=1, description="Requests one replica handles at once.")
    ray_actor_options: Optional[Dict[str, Any]] = Field(
        None,
        description=(
            "Replica actor options (num_cpus, memory, ...). Ray merges them into bundle 0 only; "
            "tier pinning is derived."
        ),
    )
    request_router_config: Optional[RequestRouterConfig] = Field(
        None, description="Ray Serve request router of the model's replicas (checked by `ray-llm validate`)."
    )

    @field_validator("ray_actor_options")
    @classmethod
    def _no_hand_placement(cls, value: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if value and ("num_gpus" in value or "accelerator_type" in value):
            raise ValueError(
                "got ray_actor_options.num_gpus/accelerator_type; expected GPUs to come from the tier and "
                "engine_kwargs parallelism; remove them and set `tier` (and `gpuShare` for a fractional GPU)"
            )
        return value

    @model_validator(mode="after")
    def _no_bundles(self) -> "DeploymentConfig":
        forbidden = {"placement_group_bundles", "placement_group_strategy"} & set(self.model_extra or {})
        if forbidden:
            raise ValueError(
                f"got {sorted(forbidden)} in deployment_config; expected no hand-written bundles; "
                "remove them: the chart derives the placement group from the tier"
            )
        return self


class ModelValues(ChartModel):
    """One model served by Ray Serve LLM. Ray's sections are copied verbatim into its ConfigMap file."""

    # chart-owned keys (camelCase)
    disabled: bool = Field(False, description="Leave this model out.")
    tier: str = Field(..., description="Name of the tier (a key of `tiers`) whose workers run this model.")
    family: str = Field(..., pattern=DNS_LABEL_PATTERN, description="Model family: one ConfigMap per family.")
    app: str = Field(..., description="Name of the LLM app (a key of `llmApps`) whose route serves this model.")
    gpu_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Fraction of one GPU per engine worker; below 1 lets several single-GPU models share a GPU.",
    )
    parameter_count_billions: Optional[float] = Field(
        None,
        gt=0,
        description="Model size in billions of parameters, for `ray-llm plan` (inferred from the name when unset).",
    )
    cached: bool = Field(
        False,
        description=(
            "Load the weights from the model cache volume: the chart renders model_source as "
            "`<modelCache.mountPath>/<model_source>` (a Hub id, which the pre-pull Job downloads there) and mounts "
            "the volume on the model's tier."
        ),
    )
    lora: Optional[LoraValues] = Field(
        None,
        description=(
            "Serve LoRA adapters of this model (renders Ray's lora_config and vLLM's enable_lora, "
            "max_lora_rank, max_loras)."
        ),
    )
    # Ray LLMConfig sections (snake_case, verbatim)
    model_loading_config: ModelLoadingConfig = Field(
        ..., alias="model_loading_config", description="Ray's model_loading_config."
    )
    engine_kwargs: Dict[str, Any] = Field(
        alias="engine_kwargs", default_factory=dict, description="vLLM engine arguments, verbatim."
    )
    deployment_config: DeploymentConfig = Field(
        alias="deployment_config", default_factory=DeploymentConfig, description="Ray Serve deployment options."
    )
    runtime_env: Dict[str, Any] = Field(
        alias="runtime_env",
        default_factory=dict,
        description="Ray runtime_env for the replica; secrets via the chart's secretKeyRef env, never inline.",
    )
    lora_config: Optional[Dict[str, Any]] = Field(
        None,
        alias="lora_config",
        description="Ray's lora_config, verbatim (prefer `lora`, which also sets the engine switches).",
    )
    accelerator_type: Optional[str] = Field(
        None,
        alias="accelerator_type",
        description="Ray accelerator type; must equal the tier's (the chart sets it from the tier when unset).",
    )
    llm_engine: Optional[str] = Field(None, alias="llm_engine", description="Ray's llm_engine (default vLLM).")
    log_engine_metrics: Optional[bool] = Field(
        None, alias="log_engine_metrics", description="Export vLLM engine metrics through Ray."
    )
    experimental_configs: Optional[Dict[str, Any]] = Field(
        None, alias="experimental_configs", description="Ray's experimental_configs."
    )
    callback_config: Optional[Dict[str, Any]] = Field(
        None, alias="callback_config", description="Ray's callback_config."
    )

    @model_validator(mode="after")
    def _parallelism(self) -> "ModelValues":
        tp = self.engine_kwargs.get("tensor_parallel_size", 1)
        pp = self.engine_kwargs.get("pipeline_parallel_size", 1)
        for key, val in (("tensor_parallel_size", tp), ("pipeline_parallel_size", pp)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(
                    f"got engine_kwargs.{key}={val!r}; expected an integer >= 1; set it to the GPUs the engine spans"
                )
        return self

    @property
    def engine_gpus(self) -> int:
        """GPU bundles of the engine's placement group: tensor x pipeline parallel size."""
        return int(self.engine_kwargs.get("tensor_parallel_size", 1)) * int(
            self.engine_kwargs.get("pipeline_parallel_size", 1)
        )


# --------------------------------------------------------------------------
# Custom applications
# --------------------------------------------------------------------------


class CustomAppValues(ChartModel):
    """A custom Ray Serve application (our runtime's builders or your own code). Keys follow Ray's app schema."""

    disabled: bool = Field(False, description="Leave this app out of serveConfigV2.")
    import_path: str = Field(
        ..., pattern=IMPORT_PATH_PATTERN, alias="import_path", description="`module:builder` of the application."
    )
    route_prefix: Optional[str] = Field(
        None,
        pattern=ROUTE_PREFIX_PATTERN,
        alias="route_prefix",
        description="HTTP route prefix; unset = not exposed over HTTP.",
    )
    args: Dict[str, Any] = Field(default_factory=dict, alias="args", description="Arguments passed to the builder.")
    runtime_env: Dict[str, Any] = Field(
        default_factory=dict,
        alias="runtime_env",
        description="Ray runtime_env of the app (remote URIs only for working_dir/py_modules).",
    )
    deployments: List[Dict[str, Any]] = Field(
        default_factory=list,
        alias="deployments",
        description="Ray Serve per-deployment overrides (name, num_replicas, ...).",
    )


# --------------------------------------------------------------------------
# Observability and cost controls
# --------------------------------------------------------------------------


class ScrapeValues(ChartModel):
    """A Prometheus Operator scrape object for Ray's metrics port (8080)."""

    enabled: bool = Field(False, description="Render it (needs the Prometheus Operator CRDs).")
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    labels: Dict[str, str] = Field(default_factory=dict, description="Extra labels (e.g. `release: prometheus`).")


class GrafanaDashboardValues(ChartModel):
    """A Grafana dashboard ConfigMap picked up by Grafana's sidecar."""

    enabled: bool = Field(False, description="Render the dashboard ConfigMap.")
    labels: Dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"}, description="Labels the Grafana sidecar selects on."
    )
    annotations: Dict[str, str] = Field(default_factory=dict, description="Annotations (e.g. the sidecar's folder).")


class MonitoringValues(ChartModel):
    """Prometheus and Grafana integration."""

    service_monitor: ScrapeValues = Field(
        default_factory=ScrapeValues, description="ServiceMonitor for the head's metrics port."
    )
    pod_monitor: ScrapeValues = Field(
        default_factory=ScrapeValues, description="PodMonitor for every Ray pod's metrics port."
    )
    grafana_dashboard: GrafanaDashboardValues = Field(
        default_factory=GrafanaDashboardValues, description="Serve and vLLM dashboard."
    )


class NightlyScaleDownValues(ChartModel):
    """Suspend the RayService at night and resume it in the morning (RayService has no scale subresource)."""

    enabled: bool = Field(
        False, description="Render the two CronJobs, their ServiceAccount and a Role limited to this RayService."
    )
    suspend_schedule: str = Field("0 20 * * 1-5", description="Cron schedule that sets `spec.suspend: true`.")
    resume_schedule: str = Field("0 7 * * 1-5", description="Cron schedule that sets `spec.suspend: false`.")
    time_zone: str = Field("Etc/UTC", description="CronJob time zone (IANA name).")
    image: str = Field("registry.k8s.io/kubectl:v1.31.0", description="Image with kubectl.")


class CostControlValues(ChartModel):
    """Cost controls beyond scale-to-zero tiers."""

    nightly_scale_down: NightlyScaleDownValues = Field(
        default_factory=NightlyScaleDownValues, description="Scheduled suspend/resume of the whole RayService."
    )


# --------------------------------------------------------------------------
# The whole values file
# --------------------------------------------------------------------------


class ChartValues(ChartModel):
    """Values of the `ray-llm` Helm chart."""

    name_override: str = Field("", description="Replaces the chart name in resource names.")
    fullname_override: str = Field("", description="Replaces the release-chart name in resource names.")
    global_: Dict[str, Any] = Field(
        default_factory=dict, alias="global", description="Helm's global values (accepted, unused)."
    )
    common_labels: Dict[str, str] = Field(default_factory=dict, description="Labels added to every object.")
    ray_version: str = Field(
        DEFAULT_RAY_VERSION,
        # the pattern goes to values.schema.json (Helm's check); the validator below says it in words
        json_schema_extra={"pattern": RAY_VERSION_PATTERN},
        description=(
            f"Ray version in the image (`rayClusterConfig.rayVersion`): {MIN_RAY_VERSION} or newer "
            "(Ray Serve LLM's config API is stable from 2.59; older releases refuse the model files the chart renders)."
        ),
    )
    image: ImageValues = Field(default_factory=ImageValues, description="Ray image for head and workers.")
    image_pull_secrets: List[Dict[str, str]] = Field(
        default_factory=list, description="Image pull secrets (`- name: x`)."
    )
    service_account_name: str = Field(
        "", description="ServiceAccount for the Ray pods; empty uses the namespace default."
    )
    hugging_face_token: SecretKeyRef = Field(
        default_factory=lambda: SecretKeyRef(secret_name="", secret_key="token"),
        description="Secret holding the Hugging Face token, exposed as `HF_TOKEN` through `secretKeyRef` only.",
    )
    secret_mounts: List[SecretMount] = Field(
        default_factory=list,
        description="Secrets mounted read-only into every Ray pod (files, never env or serveConfigV2).",
    )
    ray_service: RayServiceValues = Field(default_factory=RayServiceValues, description="RayService settings.")
    head: HeadValues = Field(default_factory=HeadValues, description="Ray head group.")
    tiers: Dict[str, TierValues] = Field(
        default_factory=dict, description="GPU worker groups keyed by tier name (e.g. small, medium, large, xlarge)."
    )
    system_group: SystemGroupValues = Field(
        default_factory=SystemGroupValues, description="Optional CPU worker group for CPU-only replicas."
    )
    model_cache: ModelCacheValues = Field(
        default_factory=ModelCacheValues, description="Shared volume of model weights, filled by a pre-pull Job."
    )
    serve: ServeValues = Field(default_factory=ServeValues, description="Ray Serve settings.")
    runtime_packaging: RuntimePackaging = Field(default_factory=RuntimePackaging, description="Runtime delivery.")
    llm_apps: Dict[str, LLMAppValues] = Field(
        default_factory=dict, description="`build_openai_app` applications keyed by app name."
    )
    models: Dict[str, ModelValues] = Field(default_factory=dict, description="Models keyed by a short name.")
    custom_apps: Dict[str, CustomAppValues] = Field(
        default_factory=dict, description="Custom Ray Serve applications keyed by app name."
    )
    monitoring: MonitoringValues = Field(
        default_factory=MonitoringValues, description="Prometheus and Grafana objects."
    )
    cost_controls: CostControlValues = Field(default_factory=CostControlValues, description="Cost controls.")

    @field_validator("ray_version")
    @classmethod
    def _supported_ray(cls, value: str) -> str:
        if not re.match(RAY_VERSION_PATTERN, value):
            raise ValueError(
                f"got rayVersion {value!r}; expected a Ray release x.y.z, {MIN_RAY_VERSION} or newer (older Ray "
                "refuses the LLMConfig fields the chart renders, e.g. placement_group_config); set rayVersion "
                f"and image.tag to a supported release such as {DEFAULT_RAY_VERSION}"
            )
        return value

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: Dict[str, TierValues]) -> Dict[str, TierValues]:
        for name in value:
            if not re.match(TIER_NAME_PATTERN, name):
                raise ValueError(
                    f"got tier name {name!r}; expected lowercase letters, digits and '-' (<= 24 chars, "
                    "starting with a letter); rename the tier"
                )
            if name == SYSTEM_GROUP_NAME:
                raise ValueError(
                    f"got tier name {name!r}; expected another name: the chart's CPU system group is called "
                    f"{SYSTEM_GROUP_NAME!r}; rename the tier"
                )
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: Dict[str, ModelValues]) -> Dict[str, ModelValues]:
        for name in value:
            if not re.match(MODEL_NAME_PATTERN, name):
                raise ValueError(
                    f"got model key {name!r}; expected lowercase letters, digits, '.', '_', '-' (<= 63 chars); "
                    "rename it"
                )
        return value

    @field_validator("llm_apps", "custom_apps")
    @classmethod
    def _app_names(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        for name in value:
            if not re.match(DNS_LABEL_PATTERN, name):
                raise ValueError(
                    f"got app name {name!r}; expected a DNS label (lowercase letters, digits, '-', <= 30 chars); "
                    "rename it"
                )
        return value
