{{/* vim: set filetype=mustache: */}}

{{/*
ray-llm.names.name: the chart name, overridable.
*/}}
{{- define "ray-llm.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
ray-llm.names.fullname: the base of every object name.
Budget: KubeRay rejects RayService names over 47 characters (it derives the
RayCluster "<name>-<5 random>", pods "<cluster>-<group>-worker-<5>" and Services
"<name>-head-svc"/"<name>-serve-svc" from it), and the longest suffix this chart
appends is "-models-<family>" (8 + 30 = 38), capped again at 63 below. So the base
is cut to 40.
*/}}
{{- define "ray-llm.names.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
ray-llm.names.withSuffix: "<fullname>-<suffix>" cut to 63 (the DNS label limit).
Call with (dict "root" $ "suffix" "x").
*/}}
{{- define "ray-llm.names.withSuffix" -}}
{{- printf "%s-%s" (include "ray-llm.names.fullname" .root) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ray-llm.names.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* ray-llm.labels.selector: labels that pick this release's objects. */}}
{{- define "ray-llm.labels.selector" -}}
app.kubernetes.io/name: {{ include "ray-llm.names.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* ray-llm.labels.standard: labels on every object. */}}
{{- define "ray-llm.labels.standard" -}}
{{ include "ray-llm.labels.selector" . }}
helm.sh/chart: {{ include "ray-llm.names.chart" . }}
app.kubernetes.io/version: {{ .Values.rayVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ray-llm
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ray-llm.names.rayService: the RayService (and so KubeRay's Services') name. */}}
{{- define "ray-llm.names.rayService" -}}
{{- include "ray-llm.names.fullname" . -}}
{{- end -}}

{{/* ray-llm.names.serveService: KubeRay's serve Service, named by us through spec.serveService. */}}
{{- define "ray-llm.names.serveService" -}}
{{- include "ray-llm.names.withSuffix" (dict "root" . "suffix" "serve") -}}
{{- end -}}

{{/* ray-llm.models.configMapName: one ConfigMap per model family. */}}
{{- define "ray-llm.models.configMapName" -}}
{{- include "ray-llm.names.withSuffix" (dict "root" .root "suffix" (printf "models-%s" .family)) -}}
{{- end -}}

{{/* ray-llm.runtime.configMapName: the runtime source ConfigMap. */}}
{{- define "ray-llm.runtime.configMapName" -}}
{{- include "ray-llm.names.withSuffix" (dict "root" . "suffix" "runtime") -}}
{{- end -}}

{{/* Paths inside the pods, shared by the volume mounts and serveConfigV2. */}}
{{- define "ray-llm.paths.root" -}}/home/ray/rayllm{{- end -}}
{{- define "ray-llm.paths.models" -}}{{ include "ray-llm.paths.root" . }}/models{{- end -}}
{{- define "ray-llm.paths.runtime" -}}{{ include "ray-llm.paths.root" . }}/runtime{{- end -}}

{{/* ray-llm.tiers.resourceName: the custom Ray resource that pins work to a tier. */}}
{{- define "ray-llm.tiers.resourceName" -}}
rayllm-tier-{{ . }}
{{- end -}}

{{/*
ray-llm.entries.enabled: JSON map (name -> entry) of the enabled entries of one map
keyed by name (tiers, models, llmApps, customApps), each with the keys it leaves out
filled from its generated defaults (_defaults.tpl, from the Pydantic models). Disabled
entries vanish here so every other template can range without checks.
Call with (dict "root" $ "entries" .Values.tiers "defaults" "ray-llm.defaults.tier").
*/}}
{{- define "ray-llm.entries.enabled" -}}
{{- $defaults := include .defaults .root | fromJson -}}
{{- $out := dict -}}
{{- range $name, $e := (default dict .entries) -}}
{{- if and (kindIs "map" $e) (not $e.disabled) -}}
{{- $full := deepCopy $e -}}
{{- range $key, $value := $defaults -}}
{{- if or (not (hasKey $full $key)) (kindIs "invalid" (index $full $key)) -}}
{{- $_ := set $full $key (deepCopy $value) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $name $full -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* ray-llm.models.enabled: JSON map of the enabled models (name -> values with defaults). */}}
{{- define "ray-llm.models.enabled" -}}
{{- include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.models "defaults" "ray-llm.defaults.model") -}}
{{- end -}}

{{/* ray-llm.tiers.enabled: JSON map of the enabled tiers (name -> values with defaults). */}}
{{- define "ray-llm.tiers.enabled" -}}
{{- include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.tiers "defaults" "ray-llm.defaults.tier") -}}
{{- end -}}

{{/*
ray-llm.models.llmConfig: the Ray LLMConfig a model's ConfigMap file holds.
Ray's sections pass through verbatim; the chart adds accelerator_type and the
placement group: every engine bundle asks for one GPU (or the model's gpuShare)
and a sliver of the tier's custom resource, so all tensor x pipeline parallel
bundles, not only the replica actor's, land on that tier's workers. Ray merges
ray_actor_options into bundle 0 only, which already carries the tier resource.
Call with (dict "root" $ "name" $name "model" $m).
*/}}
{{- define "ray-llm.models.llmConfig" -}}
{{- $m := .model -}}
{{- $tier := index (include "ray-llm.tiers.enabled" .root | fromJson) $m.tier -}}
{{- $tp := int (default 1 (index $m.engine_kwargs "tensor_parallel_size")) -}}
{{- $pp := int (default 1 (index $m.engine_kwargs "pipeline_parallel_size")) -}}
{{- $bundle := dict "GPU" $m.gpuShare (include "ray-llm.tiers.resourceName" $m.tier) 0.001 -}}
{{- $strategy := "STRICT_PACK" -}}
{{- if gt (mul $tp $pp) (int $tier.gpusPerWorker) -}}
{{- /* the engine spans workers: pack where possible, across nodes where not */ -}}
{{- $strategy = "PACK" -}}
{{- end -}}
{{- $loading := deepCopy $m.model_loading_config -}}
{{- if $m.cached -}}
{{- /* the weights the pre-pull Job put on the cache volume (rayllm_runtime.model_cache) */ -}}
{{- $_ := set $loading "model_source" (printf "%s/%s" (trimSuffix "/" .root.Values.modelCache.mountPath) (include "ray-llm.modelCache.source" $m)) -}}
{{- end -}}
{{- $cfg := dict "model_loading_config" $loading "accelerator_type" $tier.acceleratorType -}}
{{- $_ := set $cfg "placement_group_config" (dict "bundle_per_worker" $bundle "strategy" $strategy) -}}
{{- range $key := list "engine_kwargs" "deployment_config" "runtime_env" "lora_config" "llm_engine" "log_engine_metrics" "experimental_configs" "callback_config" -}}
{{- $val := index $m $key -}}
{{- if or $val (kindIs "bool" $val) -}}
{{- $_ := set $cfg $key (deepCopy $val) -}}
{{- end -}}
{{- end -}}
{{- with $m.lora -}}
{{- /* Ray loads adapters per request (model "<id>:<adapter>"); vLLM needs LoRA switched on and
sized for them: Ray sets none of these engine arguments itself. Explicit engine_kwargs win. */ -}}
{{- $lora := dict "dynamic_lora_loading_path" .dynamicLoraLoadingPath "max_num_adapters_per_replica" (int .maxAdaptersPerReplica) -}}
{{- if not (kindIs "invalid" .downloadTimeoutS) -}}{{- $_ := set $lora "download_timeout_s" .downloadTimeoutS -}}{{- end -}}
{{- $_ := set $cfg "lora_config" $lora -}}
{{- $switches := dict "enable_lora" true "max_lora_rank" (int .maxLoraRank) "max_loras" (min (int .maxLorasPerBatch) (int .maxAdaptersPerReplica)) "max_cpu_loras" (int .maxAdaptersPerReplica) -}}
{{- $_ := set $cfg "engine_kwargs" (merge (default dict (index $cfg "engine_kwargs")) $switches) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
ray-llm.models.fileName: content-addressed file name of a model's config.
Any change to the config changes the name, so serveConfigV2 changes with it
(KubeRay re-applies) and Serve can never read an old file under the new name.
*/}}
{{- define "ray-llm.models.fileName" -}}
{{- /* the mounted file ends with one newline (the "|" block in the ConfigMap) */ -}}
{{- $content := printf "%s\n" (include "ray-llm.models.llmConfig" .) -}}
{{- printf "%s.%s.yaml" .name ($content | sha256sum | trunc 12) -}}
{{- end -}}

{{- define "ray-llm.models.filePath" -}}
{{- printf "%s/%s/%s" (include "ray-llm.paths.models" .root) .model.family (include "ray-llm.models.fileName" .) -}}
{{- end -}}

{{/* ray-llm.models.families: sorted JSON list of the families of enabled models. */}}
{{- define "ray-llm.models.families" -}}
{{- $families := dict -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) -}}
{{- $_ := set $families $m.family true -}}
{{- end -}}
{{- toJson (keys $families | sortAlpha) -}}
{{- end -}}

{{/* ray-llm.image: the Ray image of head and workers. */}}
{{- define "ray-llm.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) -}}
{{- end -}}

{{/*
Placement resources. Every Ray node the chart renders declares one custom resource
saying where it is: the head `rayllm-head`, the system group `rayllm-system`, a GPU
tier `rayllm-tier-<tier>` (and `accelerator_type:<X>`, which Ray adds to every bundle
of a model with that accelerator_type). A replica asks for a sliver (0.001) of the
resource of the node kind it belongs on, so Ray places it there and nowhere else, and
the autoscaler starts exactly that group for it. Written as the group's `resources`
map (string quantities), with the GPUs and, for the head, its CPUs.
*/}}
{{- define "ray-llm.tiers.rayResources" -}}
GPU: {{ .tier.gpusPerWorker | int | toString | quote }}
{{ include "ray-llm.tiers.resourceName" .name | quote }}: "1"
{{ printf "accelerator_type:%s" .tier.acceleratorType | quote }}: "1"
{{- end -}}

{{- define "ray-llm.head.rayResources" -}}
{{- /* no GPU bundle ever lands on the head; numCpus 0 keeps CPU-asking replicas off it too */ -}}
GPU: "0"
{{- if not (kindIs "invalid" .Values.head.numCpus) }}
CPU: {{ .Values.head.numCpus | int | toString | quote }}
{{- end }}
{{ include "ray-llm.placement.headResource" . | quote }}: "1"
{{- end -}}

{{- define "ray-llm.system.rayResources" -}}
GPU: "0"
{{ include "ray-llm.placement.systemResource" . | quote }}: "1"
{{- end -}}

{{- define "ray-llm.placement.headResource" -}}rayllm-head{{- end -}}
{{- define "ray-llm.placement.systemResource" -}}rayllm-system{{- end -}}

{{/*
ray-llm.placement.cpuOnly: the custom resources (JSON) a CPU-only replica asks for: a
sliver of the system group's resource when that group is enabled, else of the head's.
*/}}
{{- define "ray-llm.placement.cpuOnly" -}}
{{- $name := ternary (include "ray-llm.placement.systemResource" .) (include "ray-llm.placement.headResource" .) (eq (toString .Values.systemGroup.enabled) "true") -}}
{{- toJson (dict $name 0.001) -}}
{{- end -}}
