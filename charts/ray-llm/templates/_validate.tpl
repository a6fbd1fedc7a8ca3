{{/*
ray-llm.validateValues: the cross-field rules values.schema.json cannot state,
checked where Helm renders (so Flux and Argo CD users get them too). Every
failure is gathered into one message; `ray-llm validate` checks the same rules
and more, with file and line.
*/}}
{{- define "ray-llm.validateValues" -}}
{{- $errors := list -}}
{{- $tiers := default dict .Values.tiers -}}
{{- $apps := default dict .Values.llmApps -}}
{{- /* Env names that carry a secret: a whole "_"-separated word, so
TOKENIZERS_PARALLELISM passes; names ending _PATH/_FILE/_DIR/_NAME point at a
mounted Secret and pass too. rayllm_cli.rules states the same patterns. */ -}}
{{- $secretish := "(?i)(^|_)(token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?)(_|$)" -}}
{{- $pointer := "(?i)_(path|file|dir|name)$" -}}
{{- $fullname := include "ray-llm.names.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- $errors = append $errors (printf "release name: got RayService name %q (from the release name %q); expected a DNS-1035 label (lowercase letters, digits and '-', starting with a letter), which KubeRay requires of a RayService name; install under a name that starts with a letter, or set fullnameOverride" $fullname .Release.Name) -}}
{{- end -}}
{{- $imageRay := regexFind "^[0-9]+\\.[0-9]+\\.[0-9]+" (toString .Values.image.tag) -}}
{{- if and $imageRay (ne $imageRay (toString .Values.rayVersion)) -}}
{{- $errors = append $errors (printf "image.tag: got %q (Ray %s); expected the Ray version of rayVersion %q; set image.tag and rayVersion to the same Ray release" .Values.image.tag $imageRay .Values.rayVersion) -}}
{{- end -}}
{{- range $name, $m := (include "ray-llm.models.enabled" . | fromJson) -}}
{{- $tier := index $tiers $m.tier -}}
{{- if or (not $tier) (and $tier $tier.disabled) -}}
{{- $errors = append $errors (printf "models.%s.tier: got %q; expected an enabled tier (one of %s); add or enable the tier, or pick another" $name $m.tier (keys $tiers | sortAlpha | join ", ")) -}}
{{- else -}}
{{- $tp := int (default 1 (index (default dict $m.engine_kwargs) "tensor_parallel_size")) -}}
{{- $pp := int (default 1 (index (default dict $m.engine_kwargs) "pipeline_parallel_size")) -}}
{{- $gpus := int (default 1 $tier.gpusPerWorker) -}}
{{- if gt (mul $tp $pp) $gpus -}}
{{- $errors = append $errors (printf "models.%s.engine_kwargs: got tensor_parallel_size x pipeline_parallel_size = %d GPUs; expected at most tier %q's gpusPerWorker %d; use a tier with more GPUs per worker or lower the parallel sizes" $name (mul $tp $pp) $m.tier $gpus) -}}
{{- end -}}
{{- if and $m.accelerator_type (ne (toString $m.accelerator_type) (toString $tier.acceleratorType)) -}}
{{- $errors = append $errors (printf "models.%s.accelerator_type: got %q; expected tier %q's %q; remove it (the chart sets it from the tier)" $name $m.accelerator_type $m.tier $tier.acceleratorType) -}}
{{- end -}}
{{- end -}}
{{- $app := index $apps (toString $m.app) -}}
{{- if or (not $app) (and $app $app.disabled) -}}
{{- $errors = append $errors (printf "models.%s.app: got %q; expected an enabled llmApps entry (one of %s); add it under llmApps or pick another" $name (toString $m.app) (keys $apps | sortAlpha | join ", ")) -}}
{{- end -}}
{{- range $k, $v := (default dict (default dict $m.runtime_env).env_vars) -}}
{{- if and $v (regexMatch $secretish $k) (not (regexMatch $pointer $k)) -}}
{{- $errors = append $errors (printf "models.%s.runtime_env.env_vars.%s: got an inline value; expected secrets only through a Secret reference; remove it and set huggingFaceToken.secretName (or tier env with valueFrom.secretKeyRef)" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $a := (default dict .Values.customApps) -}}
{{- if and $a (not $a.disabled) -}}
{{- range $k, $v := (default dict (default dict $a.runtime_env).env_vars) -}}
{{- if and $v (regexMatch $secretish $k) (not (regexMatch $pointer $k)) -}}
{{- $errors = append $errors (printf "customApps.%s.runtime_env.env_vars.%s: got an inline value; expected secrets only through a Secret reference; mount the Secret and pass its path in args" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $t := $tiers -}}
{{- if and $t (not $t.disabled) -}}
{{- range $i, $e := (default list $t.env) -}}
{{- if and (hasKey $e "value") $e.value (regexMatch $secretish (toString $e.name)) (not (regexMatch $pointer (toString $e.name))) -}}
{{- $errors = append $errors (printf "tiers.%s.env[%d] (%s): got an inline value; expected valueFrom.secretKeyRef; reference a Secret instead" $name $i $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $e := (default list .Values.head.env) -}}
{{- if and (hasKey $e "value") $e.value (regexMatch $secretish (toString $e.name)) (not (regexMatch $pointer (toString $e.name))) -}}
{{- $errors = append $errors (printf "head.env[%d] (%s): got an inline value; expected valueFrom.secretKeyRef; reference a Secret instead" $i $e.name) -}}
{{- end -}}
{{- end -}}
{{- /* Literal credentials anywhere in values: they would land in ConfigMaps,
serveConfigV2 and Helm's release Secret. Reported by place and kind, never echoed. */ -}}
{{- $tokenFormats := list
  (list "a Hugging Face token" "\\bhf_[A-Za-z0-9]{20,}")
  (list "an OpenAI-style API key" "\\bsk-[A-Za-z0-9_-]{20,}")
  (list "a GitHub token" "\\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")
  (list "an AWS access key id" "\\b(AKIA|ASIA)[0-9A-Z]{16}\\b")
  (list "a Slack token" "\\bxox[abposr]-[A-Za-z0-9-]{10,}")
  (list "a JSON Web Token" "\\beyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}")
  (list "a private key" "-----BEGIN [A-Z ]*PRIVATE KEY-----") -}}
{{- $places := dict -}}
{{- range $section, $v := .Values -}}
{{- if and (has $section (list "models" "customApps" "tiers" "llmApps")) (kindIs "map" $v) -}}
{{- range $name, $entry := $v -}}
{{- $_ := set $places (printf "%s.%s" $section $name) (toJson $entry) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $places $section (toJson $v) -}}
{{- end -}}
{{- end -}}
{{- range $place := (keys $places | sortAlpha) -}}
{{- range $f := $tokenFormats -}}
{{- if regexMatch (index $f 1) (index $places $place) -}}
{{- $errors = append $errors (printf "%s: a value looks like %s; expected no credentials in values (they end up in ConfigMaps, the RayService and Helm's release Secret); store it in a Kubernetes Secret, reference it (huggingFaceToken, secretMounts, valueFrom.secretKeyRef) and rotate the leaked credential" $place (index $f 0)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Secret-named keys with inline values inside what the chart copies verbatim
(builder args into serveConfigV2, engine_kwargs into the model files). Paths
(`*_path`) and booleans pass: the value must come from a mounted Secret. */ -}}
{{- $secretKey := "\"[^\"]*(?i:token|secret|password|passwd|api_?keys?|access_?key|private_?key|credentials?)\":(\"[^\"]|\\[\")" -}}
{{- $copied := dict -}}
{{- range $name, $m := (default dict .Values.models) -}}
{{- if $m -}}{{- $_ := set $copied (printf "models.%s.engine_kwargs" $name) (toJson (default dict $m.engine_kwargs)) -}}{{- end -}}
{{- end -}}
{{- range $name, $a := (default dict .Values.customApps) -}}
{{- if $a -}}{{- $_ := set $copied (printf "customApps.%s.args" $name) (toJson (default dict $a.args)) -}}{{- end -}}
{{- end -}}
{{- range $place := (keys $copied | sortAlpha) -}}
{{- range $hit := regexFindAll $secretKey (index $copied $place) -1 -}}
{{- $key := regexFind "^\"[^\"]*\"" $hit | trimAll "\"" -}}
{{- $errors = append $errors (printf "%s: key %q holds an inline value; expected secrets only through a Secret reference; mount the Secret with secretMounts and pass its path (e.g. auth.api_keys_path), or use huggingFaceToken.secretName for the Hugging Face token" $place $key) -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nray-llm: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
