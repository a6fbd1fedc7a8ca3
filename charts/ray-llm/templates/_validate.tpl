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
{{- $secretish := "(?i)(token|secret|password|passwd|api_?key|access_?key|credential)" -}}
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
{{- if regexMatch $secretish $k -}}
{{- $errors = append $errors (printf "models.%s.runtime_env.env_vars.%s: got an inline value; expected secrets only through a Secret reference; remove it and set huggingFaceToken.secretName (or tier env with valueFrom.secretKeyRef)" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $a := (default dict .Values.customApps) -}}
{{- if and $a (not $a.disabled) -}}
{{- range $k, $v := (default dict (default dict $a.runtime_env).env_vars) -}}
{{- if regexMatch $secretish $k -}}
{{- $errors = append $errors (printf "customApps.%s.runtime_env.env_vars.%s: got an inline value; expected secrets only through a Secret reference; mount the Secret and pass its path in args" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $t := $tiers -}}
{{- if and $t (not $t.disabled) -}}
{{- range $i, $e := (default list $t.env) -}}
{{- if and (hasKey $e "value") (regexMatch $secretish (toString $e.name)) -}}
{{- $errors = append $errors (printf "tiers.%s.env[%d] (%s): got an inline value; expected valueFrom.secretKeyRef; reference a Secret instead" $name $i $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $e := (default list .Values.head.env) -}}
{{- if and (hasKey $e "value") (regexMatch $secretish (toString $e.name)) -}}
{{- $errors = append $errors (printf "head.env[%d] (%s): got an inline value; expected valueFrom.secretKeyRef; reference a Secret instead" $i $e.name) -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nray-llm: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
