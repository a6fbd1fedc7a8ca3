{{/*
ray-llm.validateValues: the cross-field rules Helm-only users (Flux, Argo CD, plain
`helm install`) must get, checked where Helm renders. Each rule has one home in the
CLI (cli/rayllm_cli/rules, `ray-llm rules` lists them with file and line in its
findings); the ones that would otherwise render something KubeRay, Ray or Serve
accepts and then fails on (or that leaks a secret) are stated once more here, one
define per rule id. The ids come from the CLI's registry (_generated.tpl), so a
rule marked for the template without a define here fails rendering, and
tests/cli/test_cli_agrees_with_helm.py keeps both verdicts equal. Every failure is
gathered into one message, one line per problem.
*/}}
{{- define "ray-llm.validateValues" -}}
{{- $errors := list -}}
{{- range $id := (include "ray-llm.constants.templateRules" . | fromJsonArray) -}}
{{- range $line := splitList "\n" (include (printf "ray-llm.validate.%s" $id) $ | trim) -}}
{{- if $line -}}
{{- $errors = append $errors (printf "[%s] %s" $id $line) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nray-llm: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}

{{/* RL001: models and apps name tiers, apps and gateways that exist and are enabled. */}}
{{- define "ray-llm.validate.RL001" -}}
{{- $tiers := include "ray-llm.tiers.enabled" . | fromJson -}}
{{- $apps := include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.llmApps "defaults" "ray-llm.defaults.llmApp") | fromJson -}}
{{- $custom := include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.customApps "defaults" "ray-llm.defaults.customApp") | fromJson -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) }}
{{- if not (hasKey $tiers (toString $m.tier)) }}
models.{{ $name }}.tier: got {{ toString $m.tier | quote }}; expected an enabled tier (one of {{ keys $tiers | sortAlpha | join ", " }}); add or enable the tier, or pick another
{{- end }}
{{- if not (hasKey $apps (toString $m.app)) }}
models.{{ $name }}.app: got {{ toString $m.app | quote }}; expected an enabled llmApps entry (one of {{ keys $apps | sortAlpha | join ", " }}); add it under llmApps or pick another
{{- end }}
{{- end }}
{{- range $name, $a := $apps }}
{{- if eq (kindIs "invalid" $a.routePrefix) (kindIs "invalid" $a.gateway) }}
llmApps.{{ $name }}: got {{ if $a.gateway }}both routePrefix and gateway{{ else }}neither routePrefix nor gateway{{ end }}; expected exactly one; set routePrefix (its own route) or gateway (only through that gateway)
{{- else if $a.gateway }}
{{- $g := index $custom (toString $a.gateway) }}
{{- if or (not $g) (ne (toString (default dict $g).import_path) "rayllm_runtime.apps:build_gateway") }}
llmApps.{{ $name }}.gateway: got {{ toString $a.gateway | quote }}; expected an enabled customApps entry with import_path rayllm_runtime.apps:build_gateway; add that gateway or name an existing one
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* RL003: an engine's GPU bundles fit one worker of its tier; accelerator_type is the tier's. */}}
{{- define "ray-llm.validate.RL003" -}}
{{- $tiers := include "ray-llm.tiers.enabled" . | fromJson -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) }}
{{- $tier := index $tiers (toString $m.tier) }}
{{- if $tier }}
{{- $tp := int (default 1 (index $m.engine_kwargs "tensor_parallel_size")) }}
{{- $pp := int (default 1 (index $m.engine_kwargs "pipeline_parallel_size")) }}
{{- if gt (mul $tp $pp) (int $tier.gpusPerWorker) }}
models.{{ $name }}.engine_kwargs: got tensor_parallel_size x pipeline_parallel_size = {{ mul $tp $pp }} GPUs; expected at most tier {{ $m.tier | quote }}'s gpusPerWorker {{ int $tier.gpusPerWorker }}; use a tier with more GPUs per worker or lower the parallel sizes
{{- end }}
{{- if and $m.accelerator_type (ne (toString $m.accelerator_type) (toString $tier.acceleratorType)) }}
models.{{ $name }}.accelerator_type: got {{ toString $m.accelerator_type | quote }}; expected tier {{ $m.tier | quote }}'s {{ toString $tier.acceleratorType | quote }}; remove it (the chart sets it from the tier)
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
RL009: no secrets inline in values: secret-named env vars with a value, token-shaped
literals anywhere (reported by place and kind, never echoed), secret-named keys with an
inline value in what the chart copies verbatim (engine_kwargs, custom app args).
The patterns are rayllm_schemas.secret_patterns, through _generated.tpl.
*/}}
{{- define "ray-llm.validate.RL009" -}}
{{- $p := include "ray-llm.constants.secrets" . | fromJson -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) }}
{{- range $k, $v := (default dict $m.runtime_env.env_vars) }}
{{- if and $v (regexMatch $p.envName $k) (not (regexMatch $p.pointerName $k)) }}
models.{{ $name }}.runtime_env.env_vars.{{ $k }}: got an inline value; expected secrets only through a Secret reference; remove it and set huggingFaceToken.secretName (or tier env with valueFrom.secretKeyRef)
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $a := (include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.customApps "defaults" "ray-llm.defaults.customApp") | fromJson) }}
{{- range $k, $v := (default dict $a.runtime_env.env_vars) }}
{{- if and $v (regexMatch $p.envName $k) (not (regexMatch $p.pointerName $k)) }}
customApps.{{ $name }}.runtime_env.env_vars.{{ $k }}: got an inline value; expected secrets only through a Secret reference; mount the Secret and pass its path in args
{{- end }}
{{- end }}
{{- end }}
{{- $envs := list (list "head.env" .Values.head.env) (list "systemGroup.env" .Values.systemGroup.env) }}
{{- range $name, $t := (include "ray-llm.tiers.enabled" . | fromJson) }}
{{- $envs = append $envs (list (printf "tiers.%s.env" $name) $t.env) }}
{{- end }}
{{- range $pair := $envs }}
{{- range $i, $e := (default list (index $pair 1)) }}
{{- if and (hasKey $e "value") $e.value (regexMatch $p.envName (toString $e.name)) (not (regexMatch $p.pointerName (toString $e.name))) }}
{{ index $pair 0 }}[{{ $i }}] ({{ $e.name }}): got an inline value; expected valueFrom.secretKeyRef; reference a Secret instead
{{- end }}
{{- end }}
{{- end }}
{{- /* literal credentials anywhere: they would land in ConfigMaps, the RayService and Helm's release Secret */}}
{{- $places := dict }}
{{- range $section, $v := .Values }}
{{- if and (has $section (list "models" "customApps" "tiers" "llmApps")) (kindIs "map" $v) }}
{{- range $name, $entry := $v }}
{{- $_ := set $places (printf "%s.%s" $section $name) (toJson $entry) }}
{{- end }}
{{- else }}
{{- $_ := set $places $section (toJson $v) }}
{{- end }}
{{- end }}
{{- range $place := (keys $places | sortAlpha) }}
{{- range $f := $p.tokenFormats }}
{{- if regexMatch (index $f 1) (index $places $place) }}
{{ $place }}: a value looks like {{ index $f 0 }}; expected no credentials in values (they end up in ConfigMaps, the RayService and Helm's release Secret); store it in a Kubernetes Secret, reference it (huggingFaceToken, secretMounts, valueFrom.secretKeyRef) and rotate the leaked credential
{{- end }}
{{- end }}
{{- end }}
{{- /* secret-named keys with inline values in what the chart copies verbatim; paths and booleans pass */}}
{{- $copied := dict }}
{{- range $name, $m := (default dict .Values.models) }}
{{- if $m }}{{- $_ := set $copied (printf "models.%s.engine_kwargs" $name) (toJson (default dict $m.engine_kwargs)) }}{{- end }}
{{- end }}
{{- range $name, $a := (default dict .Values.customApps) }}
{{- if $a }}{{- $_ := set $copied (printf "customApps.%s.args" $name) (toJson (default dict $a.args)) }}{{- end }}
{{- end }}
{{- range $place := (keys $copied | sortAlpha) }}
{{- range $hit := regexFindAll $p.keyInJson (index $copied $place) -1 }}
{{ $place }}: key {{ regexFind "^\"[^\"]*\"" $hit | trimAll "\"" | quote }} holds an inline value; expected secrets only through a Secret reference; mount the Secret with secretMounts and pass its path (e.g. auth.api_keys_path), or use huggingFaceToken.secretName for the Hugging Face token
{{- end }}
{{- end }}
{{- end -}}

{{/* RL011: the image tag and rayVersion name the same Ray release. */}}
{{- define "ray-llm.validate.RL011" -}}
{{- $imageRay := regexFind "^v?[0-9]+\\.[0-9]+\\.[0-9]+" (toString .Values.image.tag) | trimPrefix "v" -}}
{{- if and $imageRay (ne $imageRay (toString .Values.rayVersion)) }}
image.tag: got {{ toString .Values.image.tag | quote }} (Ray {{ $imageRay }}); expected the Ray version of rayVersion {{ toString .Values.rayVersion | quote }}; set image.tag and rayVersion to the same Ray release
{{- end }}
{{- end -}}

{{/* RL015: every Ray group carries CPU and memory; without CPU, Ray's autoscaler fails at start. */}}
{{- define "ray-llm.validate.RL015" -}}
{{- $groups := dict -}}
{{- range $name, $t := (include "ray-llm.tiers.enabled" . | fromJson) }}
{{- $_ := set $groups (printf "tiers.%s.resources" $name) $t.resources }}
{{- end }}
{{- if .Values.systemGroup.enabled }}
{{- $_ := set $groups "systemGroup.resources" .Values.systemGroup.resources }}
{{- end }}
{{- range $path := (keys $groups | sortAlpha) }}
{{- $res := default dict (index $groups $path) }}
{{- range $what := list "cpu" "memory" }}
{{- if not (or (index (default dict $res.limits) $what) (index (default dict $res.requests) $what)) }}
{{ $path }}: got no {{ $what }} request or limit; expected cpu and memory (Ray's autoscaler sizes each worker group from them and fails at start without CPU); set them, or leave resources out for the defaults
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* RL016: per-group idleTimeoutSeconds runs on autoscaler v2 (KubeRay refuses it otherwise). */}}
{{- define "ray-llm.validate.RL016" -}}
{{- if ne (toString .Values.rayService.autoscalerOptions.version) "v2" }}
{{- range $name, $t := (include "ray-llm.tiers.enabled" . | fromJson) }}
{{- if not (kindIs "invalid" $t.idleTimeoutSeconds) }}
tiers.{{ $name }}.idleTimeoutSeconds: got a per-group idle timeout with autoscaler {{ $.Values.rayService.autoscalerOptions.version }}; expected autoscaler v2, since KubeRay refuses the whole RayService otherwise; set rayService.autoscalerOptions.version: v2 or remove it
{{- end }}
{{- end }}
{{- if and .Values.systemGroup.enabled (not (kindIs "invalid" .Values.systemGroup.idleTimeoutSeconds)) }}
systemGroup.idleTimeoutSeconds: got a per-group idle timeout with autoscaler {{ .Values.rayService.autoscalerOptions.version }}; expected autoscaler v2, since KubeRay refuses the whole RayService otherwise; set rayService.autoscalerOptions.version: v2 or remove it
{{- end }}
{{- end }}
{{- end -}}

{{/* RL017: the RayService name (from the release) is a DNS-1035 label, as KubeRay requires. */}}
{{- define "ray-llm.validate.RL017" -}}
{{- $fullname := include "ray-llm.names.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) }}
release name: got RayService name {{ $fullname | quote }} (release {{ .Release.Name | quote }}); expected a DNS-1035 label (lowercase letters, digits and '-', starting with a letter), which KubeRay requires of a RayService name; install under a name that starts with a letter, or set fullnameOverride
{{- end }}
{{- end -}}

{{/* RL018: the incremental upgrade strategy is fully configured (KubeRay's ValidateClusterUpgradeOptions),
and no Ingress points at the serve Service KubeRay does not keep in that mode. */}}
{{- define "ray-llm.validate.RL018" -}}
{{- $rs := .Values.rayService -}}
{{- if eq (toString $rs.upgradeStrategy) "NewClusterWithIncrementalUpgrade" }}
{{- $opts := $rs.incrementalUpgrade }}
{{- if not $opts.gatewayClassName }}
rayService.incrementalUpgrade.gatewayClassName: got no gateway class for upgradeStrategy NewClusterWithIncrementalUpgrade; expected the name of a GatewayClass in the cluster, since KubeRay refuses the RayService without one; set it (kubectl get gatewayclass) or use upgradeStrategy: NewCluster
{{- end }}
{{- if eq (toString $rs.enableInTreeAutoscaling) "false" }}
rayService.enableInTreeAutoscaling: got false with upgradeStrategy NewClusterWithIncrementalUpgrade; expected true, since KubeRay refuses the RayService without the autoscaler; set it to true or use upgradeStrategy: NewCluster
{{- end }}
{{- if gt (int $opts.stepSizePercent) (int $opts.maxSurgePercent) }}
rayService.incrementalUpgrade.stepSizePercent: got {{ $opts.stepSizePercent }}, beyond maxSurgePercent {{ $opts.maxSurgePercent }}; expected stepSizePercent <= maxSurgePercent, since KubeRay refuses the RayService otherwise; lower stepSizePercent or raise maxSurgePercent
{{- end }}
{{- if .Values.serve.ingress.enabled }}
serve.ingress.enabled: got an Ingress with upgradeStrategy NewClusterWithIncrementalUpgrade; expected none, since KubeRay then serves through the Gateway {{ include "ray-llm.names.rayService" . }}-gateway and each cluster's own serve Service, so the Ingress backend would not exist; reach Serve through that Gateway or use upgradeStrategy: NewCluster
{{- end }}
{{- end }}
{{- end -}}

{{/* RL019: a model that loads from the model cache has the volume (enabled, on its tier, a Hub id to pre-pull). */}}
{{- define "ray-llm.validate.RL019" -}}
{{- $root := . -}}
{{- $cache := .Values.modelCache -}}
{{- $tiers := default dict .Values.tiers -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) }}
{{- if include "ray-llm.modelCache.uses" (dict "root" $root "model" $m) }}
{{- $where := ternary "cached" "model_loading_config.model_source" (eq (toString $m.cached) "true") }}
{{- if not $cache.enabled }}
models.{{ $name }}.{{ $where }}: got weights from the model cache ({{ trimSuffix "/" $cache.mountPath }}) with modelCache disabled; expected modelCache.enabled: true, since no pod mounts that path otherwise; enable modelCache or load from the Hub
{{- else }}
{{- $t := index $tiers (toString $m.tier) }}
{{- if and (kindIs "map" $t) (eq (toString $t.modelCache) "false") }}
models.{{ $name }}.tier: got tier {{ toString $m.tier | quote }}, which opts out of the model cache volume (modelCache: false); expected a tier that mounts it; place the model elsewhere or remove that opt-out
{{- end }}
{{- if and $m.cached (not (regexMatch (include "ray-llm.constants.patterns" $root | fromJson).hubId (include "ray-llm.modelCache.source" $m))) }}
models.{{ $name }}.model_loading_config.model_source: got {{ include "ray-llm.modelCache.source" $m | quote }} for a cached model; expected a Hugging Face id, which the pre-pull Job downloads; set the Hub id or drop cached
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* RL020: LoRA adapters are configured in one place, with the engine switches vLLM needs. */}}
{{- define "ray-llm.validate.RL020" -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) }}
{{- if and $m.lora $m.lora_config }}
models.{{ $name }}.lora_config: got both lora and lora_config; expected one, since lora renders Ray's lora_config itself; remove lora_config
{{- else if $m.lora }}
{{- if eq (toString (index $m.engine_kwargs "enable_lora")) "false" }}
models.{{ $name }}.engine_kwargs.enable_lora: got false beside lora; expected it unset or true, since every adapter request fails otherwise; remove it
{{- end }}
{{- else if $m.lora_config }}
{{- if not (regexMatch (include "ray-llm.constants.patterns" $ | fromJson).loraUri (toString $m.lora_config.dynamic_lora_loading_path)) }}
models.{{ $name }}.lora_config.dynamic_lora_loading_path: got {{ toString $m.lora_config.dynamic_lora_loading_path | quote }}; expected an s3://, gs://, abfss:// or azure:// URI, the only places Ray Serve LLM loads adapters from; upload the adapters to a bucket
{{- end }}
{{- if ne (toString (index $m.engine_kwargs "enable_lora")) "true" }}
models.{{ $name }}.engine_kwargs.enable_lora: got Ray's lora_config without vLLM's enable_lora: true; expected it set, since Ray sets no engine switch itself; use lora instead of lora_config, or set enable_lora, max_lora_rank and max_loras
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
