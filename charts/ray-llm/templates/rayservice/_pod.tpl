{{/*
Pieces shared by the head and worker pod templates.
*/}}

{{/* ray-llm.pod.volumes: model family ConfigMaps, the runtime source, and /dev/shm for NCCL. */}}
{{- define "ray-llm.pod.volumes" -}}
{{- $root := . -}}
{{- range $family := (include "ray-llm.models.families" $root | fromJsonArray) }}
- name: models-{{ $family }}
  configMap:
    name: {{ include "ray-llm.models.configMapName" (dict "root" $root "family" $family) }}
{{- end }}
{{- if eq (include "ray-llm.runtime.mode" $root) "configMap" }}
- name: rayllm-runtime
  configMap:
    name: {{ include "ray-llm.runtime.configMapName" $root }}
    items:
    {{- range $path, $_ := $root.Files.Glob "files/rayllm_runtime/**.py" }}
    - key: {{ include "ray-llm.runtime.fileKey" $path }}
      path: {{ trimPrefix "files/" $path }}
    {{- end }}
{{- end }}
{{- range $m := (default list $root.Values.secretMounts) }}
- name: secret-{{ $m.name }}
  secret:
    secretName: {{ $m.secretName }}
{{- end }}
- name: dshm
  emptyDir:
    medium: Memory
{{- end -}}

{{/* ray-llm.pod.volumeMounts: where the apps read their files. */}}
{{- define "ray-llm.pod.volumeMounts" -}}
{{- $root := . -}}
{{- range $family := (include "ray-llm.models.families" $root | fromJsonArray) }}
- name: models-{{ $family }}
  mountPath: {{ include "ray-llm.paths.models" $root }}/{{ $family }}
  readOnly: true
{{- end }}
{{- if eq (include "ray-llm.runtime.mode" $root) "configMap" }}
- name: rayllm-runtime
  mountPath: {{ include "ray-llm.paths.runtime" $root }}
  readOnly: true
{{- end }}
{{- range $m := (default list $root.Values.secretMounts) }}
- name: secret-{{ $m.name }}
  mountPath: {{ $m.mountPath }}
  readOnly: true
{{- end }}
- name: dshm
  mountPath: /dev/shm
{{- end -}}

{{/* ray-llm.pod.env: env shared by head and workers. The HF token only as secretKeyRef. */}}
{{- define "ray-llm.pod.env" -}}
- name: TOKENIZERS_PARALLELISM
  value: "false"
{{- if eq (include "ray-llm.runtime.mode" .) "configMap" }}
- name: PYTHONPATH
  value: {{ include "ray-llm.paths.runtime" . | quote }}
{{- end }}
{{- with .Values.huggingFaceToken }}
{{- if .secretName }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
      optional: {{ .optional }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
ray-llm.pod.securityContext: the Ray images run as uid 1000 ("ray").
Every Ray pod meets the Pod Security Standards "restricted" level: non-root,
seccomp RuntimeDefault, no privilege escalation, every capability dropped,
only configMap/secret/emptyDir volumes, no host namespaces or ports (GPUs come
through the device plugin's resource, which needs nothing privileged in the
pod). KubeRay copies the Ray container's securityContext into the workers'
wait-gcs-ready init container, and the chart sets the autoscaler sidecar's.
Deliberate deviations from stricter checkers (tests/security, ci/checkov-skips.yaml):
- uid 1000, not a "high" uid: the image's HOME (/home/ray, with its Python
  install) belongs to uid 1000;
- no readOnlyRootFilesystem: Ray writes /tmp/ray (sessions, logs, spilling)
  and vLLM, Triton, torch and Hugging Face write caches under /home/ray; the
  set of paths depends on the engine, so emptyDir overlays are left to users.
*/}}
{{- define "ray-llm.pod.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 100
fsGroup: 100
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ray-llm.pod.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* ray-llm.pod.headHealthCommand: raylet and GCS health, as KubeRay's injected head probes check them. Takes head.rayStartParams. */}}
{{- define "ray-llm.pod.headHealthCommand" -}}
{{- $agent := default "52365" (index . "dashboard-agent-listen-port") -}}
{{- $dashboard := default "8265" (index . "dashboard-port") -}}
{{- printf "wget --tries 1 -T 2 -q -O- http://localhost:%v/api/local_raylet_healthz | grep success && wget --tries 1 -T 2 -q -O- http://localhost:%v/api/gcs_healthz | grep success" $agent $dashboard -}}
{{- end -}}

{{/* ray-llm.pod.resources: cpu/memory from values, dropping unset entries; extra GPUs via .gpus. */}}
{{- define "ray-llm.pod.resources" -}}
{{- $out := dict -}}
{{- range $kind := list "requests" "limits" -}}
{{- $list := dict -}}
{{- range $k, $v := (index (default dict $.resources) $kind | default dict) -}}
{{- if not (kindIs "invalid" $v) -}}
{{- $_ := set $list $k (toString $v) -}}
{{- end -}}
{{- end -}}
{{- if $.gpus -}}
{{- $_ := set $list $.gpuResource (toString $.gpus) -}}
{{- end -}}
{{- if $list -}}
{{- $_ := set $out $kind $list -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* ray-llm.runtime.mode: configMap or image. */}}
{{- define "ray-llm.runtime.mode" -}}
{{- .Values.runtimePackaging.mode -}}
{{- end -}}

{{/* ray-llm.runtime.fileKey: ConfigMap keys are flat; "a/b/c.py" becomes "a__b__c.py". */}}
{{- define "ray-llm.runtime.fileKey" -}}
{{- trimPrefix "files/" . | replace "/" "__" -}}
{{- end -}}
