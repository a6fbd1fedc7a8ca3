{{/*
ray-llm.serve.config: the hybrid serveConfigV2 (as a YAML string).
- one build_openai_app application per enabled llmApps entry that has models,
  its llm_configs pointing at the content-addressed model files;
- every enabled customApps entry, Ray's application keys verbatim.
*/}}
{{- define "ray-llm.serve.config" -}}
{{- $root := . -}}
{{- $models := include "ray-llm.models.enabled" . | fromJson -}}
{{- $serve := default dict .Values.serve -}}
{{- $apps := list -}}
{{- range $appName, $app := (default dict .Values.llmApps) -}}
{{- if and $app (not $app.disabled) -}}
{{- $paths := list -}}
{{- range $name, $m := $models -}}
{{- if eq (toString $m.app) $appName -}}
{{- $paths = append $paths (include "ray-llm.models.filePath" (dict "root" $root "name" $name "model" $m)) -}}
{{- end -}}
{{- end -}}
{{- if $paths -}}
{{- $args := dict "llm_configs" $paths -}}
{{- $importPath := "ray.serve.llm:build_openai_app" -}}
{{- if ne (toString $serve.verifyMountedConfigs) "false" -}}
{{- $importPath = "rayllm_runtime.serve_llm:build_openai_app" -}}
{{- $_ := set $args "config_wait_timeout_s" (int (default 300 $serve.configWaitTimeoutS)) -}}
{{- end -}}
{{- $apps = append $apps (dict "name" $appName "import_path" $importPath "route_prefix" $app.routePrefix "args" $args) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $appName, $a := (default dict .Values.customApps) -}}
{{- if and $a (not $a.disabled) -}}
{{- $entry := dict "name" $appName "import_path" $a.import_path -}}
{{- if $a.route_prefix -}}{{- $_ := set $entry "route_prefix" $a.route_prefix -}}{{- end -}}
{{- if $a.args -}}{{- $_ := set $entry "args" $a.args -}}{{- end -}}
{{- if $a.runtime_env -}}{{- $_ := set $entry "runtime_env" $a.runtime_env -}}{{- end -}}
{{- if $a.deployments -}}{{- $_ := set $entry "deployments" $a.deployments -}}{{- end -}}
{{- $apps = append $apps $entry -}}
{{- end -}}
{{- end -}}
{{- $http := dict "host" "0.0.0.0" "port" (int (default 8000 $serve.port)) -}}
{{- if $serve.requestTimeoutS -}}{{- $_ := set $http "request_timeout_s" $serve.requestTimeoutS -}}{{- end -}}
{{- if $serve.keepAliveTimeoutS -}}{{- $_ := set $http "keep_alive_timeout_s" (int $serve.keepAliveTimeoutS) -}}{{- end -}}
{{- toYaml (dict "proxy_location" (default "EveryNode" $serve.proxyLocation) "http_options" $http "applications" $apps) -}}
{{- end -}}
