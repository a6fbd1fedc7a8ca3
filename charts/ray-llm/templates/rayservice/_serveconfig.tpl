{{/*
ray-llm.serve.config: the hybrid serveConfigV2 (as a YAML string).
- one build_openai_app application per enabled llmApps entry that has models and a
  routePrefix, its llm_configs pointing at the content-addressed model files;
- for an llmApps entry with `gateway:`, one application per model instead (Ray's
  LLMServer through rayllm_runtime.serve_llm:build_llm_app) with no HTTP route: the
  named gateway reaches it through a Serve handle, so nobody bypasses the gateway's
  auth and limits, and a change to one model redeploys that model alone;
- every enabled customApps entry, Ray's application keys verbatim, plus what the chart
  derives for the runtime's gateway builder (placement, the models it fronts) and a
  version of the runtime code the app imports (so a runtime change redeploys it).
Every CPU-only ingress is pinned beside a proxy (ray-llm.placement.cpuOnly).
*/}}
{{- define "ray-llm.serve.config" -}}
{{- $root := . -}}
{{- $models := include "ray-llm.models.enabled" . | fromJson -}}
{{- $llmApps := include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.llmApps "defaults" "ray-llm.defaults.llmApp") | fromJson -}}
{{- $customApps := include "ray-llm.entries.enabled" (dict "root" . "entries" .Values.customApps "defaults" "ray-llm.defaults.customApp") | fromJson -}}
{{- $serve := .Values.serve -}}
{{- $verify := ne (toString $serve.verifyMountedConfigs) "false" -}}
{{- $cpuOnly := include "ray-llm.placement.cpuOnly" . | fromJson -}}
{{- $apps := list -}}
{{- $fronted := dict -}}
{{- range $appName, $app := $llmApps -}}
{{- $paths := list -}}
{{- range $name, $m := $models -}}
{{- if eq (toString $m.app) $appName -}}
{{- $path := include "ray-llm.models.filePath" (dict "root" $root "name" $name "model" $m) -}}
{{- if $app.gateway -}}
{{- /* one Serve app per model, no route: only the gateway reaches it */ -}}
{{- $single := printf "%s.%s" $appName $name -}}
{{- $args := dict "llm_config" $path "config_wait_timeout_s" (int $serve.configWaitTimeoutS) "verify_content_hash" $verify -}}
{{- $entry := dict "name" $single "import_path" "rayllm_runtime.serve_llm:build_llm_app" "route_prefix" nil "args" $args -}}
{{- $_ := set $entry "runtime_env" (include "ray-llm.runtime.env" (dict "root" $root "files" (list "serve_llm.py")) | fromJson) -}}
{{- $apps = append $apps $entry -}}
{{- $upstreams := get $fronted (toString $app.gateway) | default list -}}
{{- $upstream := dict "app" $single "model_ids" (list $m.model_loading_config.model_id) -}}
{{- if or $m.lora $m.lora_config -}}
{{- /* the gateway sends "<model_id>:<adapter>" on to this app with Serve's multiplexed model id */ -}}
{{- $_ := set $upstream "lora_adapters" true -}}
{{- end -}}
{{- $_ := set $fronted (toString $app.gateway) (append $upstreams $upstream) -}}
{{- else -}}
{{- $paths = append $paths $path -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $paths -}}
{{- $args := dict "llm_configs" $paths "ingress_deployment_config" (dict "ray_actor_options" (dict "num_cpus" 0 "resources" $cpuOnly)) -}}
{{- $entry := dict "name" $appName "import_path" "ray.serve.llm:build_openai_app" "route_prefix" $app.routePrefix "args" $args -}}
{{- if $verify -}}
{{- $_ := set $entry "import_path" "rayllm_runtime.serve_llm:build_openai_app" -}}
{{- $_ := set $args "config_wait_timeout_s" (int $serve.configWaitTimeoutS) -}}
{{- $_ := set $entry "runtime_env" (include "ray-llm.runtime.env" (dict "root" $root "files" (list "serve_llm.py")) | fromJson) -}}
{{- end -}}
{{- $apps = append $apps $entry -}}
{{- end -}}
{{- end -}}
{{- range $appName, $a := $customApps -}}
{{- $entry := dict "name" $appName "import_path" $a.import_path "route_prefix" $a.route_prefix -}}
{{- $args := deepCopy $a.args -}}
{{- if eq $a.import_path "rayllm_runtime.apps:build_gateway" -}}
{{- if not (hasKey $args "cpu_placement") -}}
{{- $_ := set $args "cpu_placement" $cpuOnly -}}
{{- end -}}
{{- with get $fronted $appName -}}
{{- $_ := set $args "upstreams" (concat (default list $args.upstreams) .) -}}
{{- end -}}
{{- end -}}
{{- if $args -}}{{- $_ := set $entry "args" $args -}}{{- end -}}
{{- $runtimeEnv := deepCopy $a.runtime_env -}}
{{- if hasPrefix "rayllm_runtime." $a.import_path -}}
{{- $runtimeEnv = mergeOverwrite (include "ray-llm.runtime.env" (dict "root" $root "files" (list)) | fromJson) $runtimeEnv -}}
{{- end -}}
{{- if $runtimeEnv -}}{{- $_ := set $entry "runtime_env" $runtimeEnv -}}{{- end -}}
{{- if $a.deployments -}}{{- $_ := set $entry "deployments" $a.deployments -}}{{- end -}}
{{- $apps = append $apps $entry -}}
{{- end -}}
{{- $http := dict "host" "0.0.0.0" "port" (int $serve.port) -}}
{{- if $serve.requestTimeoutS -}}{{- $_ := set $http "request_timeout_s" $serve.requestTimeoutS -}}{{- end -}}
{{- if $serve.keepAliveTimeoutS -}}{{- $_ := set $http "keep_alive_timeout_s" (int $serve.keepAliveTimeoutS) -}}{{- end -}}
{{- toYaml (dict "proxy_location" $serve.proxyLocation "http_options" $http "applications" $apps) -}}
{{- end -}}

{{/*
ray-llm.runtime.env: the runtime_env (JSON) that ties an app to the runtime code it
imports. Editing a runtime module changes only the runtime ConfigMap, which Serve does
not see: replicas would keep the old code until they restart, and then run a mix.
RAYLLM_RUNTIME_VERSION (a digest of the shipped files the app imports; all of them
when .files is empty) is part of the app's config, so a runtime change is a visible
redeploy of exactly the apps that import the changed code. Empty in image mode (a new
image changes the pod templates instead). Call with (dict "root" $ "files" (list ...)).
*/}}
{{- define "ray-llm.runtime.env" -}}
{{- $root := .root -}}
{{- if eq (include "ray-llm.runtime.mode" $root) "configMap" -}}
{{- $digests := list -}}
{{- range $path, $bytes := $root.Files.Glob "files/rayllm_runtime/**.py" -}}
{{- $rel := trimPrefix "files/rayllm_runtime/" $path -}}
{{- if or (not $.files) (has $rel $.files) (eq $rel "__init__.py") -}}
{{- $digests = append $digests (printf "%s:%s" $rel (toString $bytes | sha256sum)) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "env_vars" (dict "RAYLLM_RUNTIME_VERSION" (join "\n" $digests | sha256sum | trunc 12))) -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}
