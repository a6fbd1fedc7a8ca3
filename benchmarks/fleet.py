"""Generated model fleets for the chart benchmarks.

``fleet(n)`` returns a values dict with ``n`` models spread round-robin over the
four tiers of ``values/prod.yaml`` (small 1xT4, medium 1xL4, large 2xL4,
xlarge 2xA100-80G), eight model families and five llmApps. Every model is valid
for ``ray-llm validate``: its tensor_parallel_size fits its tier's
gpusPerWorker, T4 models use float16, max_model_len stays within the model's
context, and each tier's maxReplicas covers its models at max_replicas.
"""

from __future__ import annotations

from typing import Any, Dict

FAMILIES = ["falcon", "qwen", "llama", "mistral", "gemma", "phi", "granite", "olmo"]
APPS = ["chat", "code", "long", "batch", "eval"]

# tier -> (accelerator, gpusPerWorker, node pool, cpu, memory, object store bytes)
TIERS = {
    "small": ("T4", 1, "t4-pool", "6", "24Gi", 8589934592),
    "medium": ("L4", 1, "l4-pool", "10", "40Gi", 8589934592),
    "large": ("L4", 2, "l4-multi-pool", "20", "80Gi", 17179869184),
    "xlarge": ("A100-80G", 2, "a100-pool", "22", "300Gi", 34359738368),
}

# tier -> (model_source, parameters in billions, engine_kwargs)
MODELS = {
    "small": ("Qwen/Qwen2.5-1.5B-Instruct", 1.5,
              {"dtype": "float16", "max_model_len": 4096, "gpu_memory_utilization": 0.6,
               "max_num_seqs": 64, "max_num_batched_tokens": 8192}),
    "medium": ("meta-llama/Llama-3.1-8B-Instruct", 8.0,
               {"dtype": "bfloat16", "max_model_len": 8192, "gpu_memory_utilization": 0.9,
                "max_num_seqs": 48, "max_num_batched_tokens": 16384}),
    "large": ("tiiuae/Falcon3-10B-Instruct", 10.3,
              {"dtype": "bfloat16", "tensor_parallel_size": 2, "max_model_len": 8192,
               "gpu_memory_utilization": 0.9, "max_num_seqs": 24, "max_num_batched_tokens": 32768}),
    "xlarge": ("tiiuae/falcon-40b-instruct", 41.8,
               {"dtype": "bfloat16", "tensor_parallel_size": 2, "max_model_len": 2048,
                "gpu_memory_utilization": 0.95, "max_num_seqs": 16, "max_num_batched_tokens": 16384}),
}

MAX_REPLICAS = 2  # per model


def fleet(n: int) -> Dict[str, Any]:
    """A valid values dict with ``n`` models."""
    names = list(TIERS)
    models: Dict[str, Any] = {}
    per_tier = {t: 0 for t in names}
    for i in range(n):
        tier = names[i % len(names)]
        family = FAMILIES[(i // len(names)) % len(FAMILIES)]
        app = APPS[i % len(APPS)]
        source, params, engine = MODELS[tier]
        name = f"{family}-{tier}-{i:04d}"
        per_tier[tier] += 1
        models[name] = {
            "tier": tier,
            "family": family,
            "app": app,
            "parameterCountBillions": params,
            "model_loading_config": {"model_id": f"{name}-instruct", "model_source": source},
            "engine_kwargs": dict(engine),
            "deployment_config": {
                "autoscaling_config": {"min_replicas": 0, "max_replicas": MAX_REPLICAS,
                                       "target_ongoing_requests": 16},
                "max_ongoing_requests": 24,
            },
        }
    tiers: Dict[str, Any] = {}
    for tier, (accel, gpus, pool, cpu, mem, osm) in TIERS.items():
        tiers[tier] = {
            "acceleratorType": accel,
            "gpusPerWorker": gpus,
            "minReplicas": 0,
            # each model's engine fills one worker: cover every model at max_replicas (RL004)
            "maxReplicas": max(1, per_tier[tier] * MAX_REPLICAS),
            "objectStoreMemory": osm,
            "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}},
            "nodeSelector": {"cloud.google.com/gke-nodepool": pool},
            "tolerations": [
                {"key": "nvidia.com/gpu-type", "operator": "Equal", "value": accel.lower(), "effect": "NoSchedule"},
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            ],
        }
    return {
        "huggingFaceToken": {"secretName": "huggingface-secret", "secretKey": "token"},
        "rayService": {"upgradeStrategy": "NewCluster",
                       "autoscalerOptions": {"idleTimeoutSeconds": 300, "upscalingMode": "Default"}},
        "head": {"numCpus": 0, "objectStoreMemory": 4294967296,
                 "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "10", "memory": "48Gi"}},
                 "nodeSelector": {"cloud.google.com/gke-nodepool": "app-pool"}},
        "serve": {"requestTimeoutS": 1500, "service": {"type": "ClusterIP"}},
        "tiers": tiers,
        "llmApps": {a: {"routePrefix": f"/{a}"} for a in APPS},
        "models": models,
    }
