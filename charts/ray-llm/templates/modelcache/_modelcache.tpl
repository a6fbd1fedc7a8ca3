{{/*
The model weights cache: a PersistentVolumeClaim mounted read-only on the tiers whose
models load from it, and a Job that fills it (python -m rayllm_runtime.model_cache).
*/}}

{{/* ray-llm.modelCache.claimName: the existing claim, or <fullname (<= 40)>-model-cache (<= 52). */}}
{{- define "ray-llm.modelCache.claimName" -}}
{{- default (include "ray-llm.names.withSuffix" (dict "root" . "suffix" "model-cache")) .Values.modelCache.existingClaim -}}
{{- end -}}

{{/* ray-llm.modelCache.source: the Hub id a cached model's weights come from. Call with the model. */}}
{{- define "ray-llm.modelCache.source" -}}
{{- default .model_loading_config.model_id .model_loading_config.model_source -}}
{{- end -}}

{{/* ray-llm.modelCache.uses: "true" when a model loads from the cache volume (cached, or a
model_source under the mount path). Call with (dict "root" $ "model" $m). */}}
{{- define "ray-llm.modelCache.uses" -}}
{{- $mount := printf "%s/" (trimSuffix "/" .root.Values.modelCache.mountPath) -}}
{{- $source := .model.model_loading_config.model_source -}}
{{- if or .model.cached (and (kindIs "string" $source) (hasPrefix $mount $source)) -}}true{{- end -}}
{{- end -}}

{{/* ray-llm.modelCache.repos: sorted JSON list of the Hub ids of the enabled cached models. */}}
{{- define "ray-llm.modelCache.repos" -}}
{{- $repos := dict -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) -}}
{{- if $m.cached -}}
{{- $_ := set $repos (include "ray-llm.modelCache.source" $m) true -}}
{{- end -}}
{{- end -}}
{{- toJson (keys $repos | sortAlpha) -}}
{{- end -}}

{{/* ray-llm.modelCache.tiers: sorted JSON list of the enabled tiers that mount the cache:
those a cache-using model is placed on, unless the tier opts out (modelCache: false). */}}
{{- define "ray-llm.modelCache.tiers" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- if .Values.modelCache.enabled -}}
{{- $tiers := include "ray-llm.tiers.enabled" . | fromJson -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) -}}
{{- $t := index $tiers (toString $m.tier) -}}
{{- if and $t (ne (toString $t.modelCache) "false") (include "ray-llm.modelCache.uses" (dict "root" $root "model" $m)) -}}
{{- $_ := set $out (toString $m.tier) true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (keys $out | sortAlpha) -}}
{{- end -}}

{{/* ray-llm.modelCache.jobName: <fullname (<= 40)>-prepull-<8 hex> (<= 57): a new name when what
it downloads changes, since a Job's pod template cannot be edited in place. */}}
{{- define "ray-llm.modelCache.jobName" -}}
{{- $what := dict "repos" (include "ray-llm.modelCache.repos" .) "ignore" .Values.modelCache.prePull.ignorePatterns "image" (include "ray-llm.image" .) "claim" (include "ray-llm.modelCache.claimName" .) -}}
{{- printf "%s-%s" (include "ray-llm.names.withSuffix" (dict "root" . "suffix" "prepull")) (toJson $what | sha256sum | trunc 8) -}}
{{- end -}}

{{/* ray-llm.modelCache.volume / volumeMount: for a worker group that mounts the cache (read-only). */}}
{{- define "ray-llm.modelCache.volume" -}}
- name: model-cache
  persistentVolumeClaim:
    claimName: {{ include "ray-llm.modelCache.claimName" . }}
    readOnly: true
{{- end -}}

{{- define "ray-llm.modelCache.volumeMount" -}}
- name: model-cache
  mountPath: {{ trimSuffix "/" .Values.modelCache.mountPath }}
  readOnly: true
{{- end -}}
