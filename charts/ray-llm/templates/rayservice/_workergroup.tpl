{{/*
ray-llm.rayservice.workerGroup: one entry of workerGroupSpecs (a GPU tier or the CPU
system group). Call with (dict "root" $ "name" <group name> "group" <values of the
group, defaults filled> "gpus" <GPUs per worker> "rayResources" <YAML of the group's
Ray resources> "component" <app.kubernetes.io/component> "modelCache" <mount the model
cache volume>).
*/}}
{{- define "ray-llm.rayservice.workerGroup" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{- $min := int $g.minReplicas -}}
- groupName: {{ .name }}
  replicas: {{ ternary $min (int $g.replicas) (kindIs "invalid" $g.replicas) }}
  minReplicas: {{ $min }}
  maxReplicas: {{ int $g.maxReplicas }}
  {{- with $g.idleTimeoutSeconds }}
  idleTimeoutSeconds: {{ int . }}
  {{- end }}
  rayStartParams:
    {{- range $k, $v := $g.rayStartParams }}
    {{ $k }}: {{ toString $v | quote }}
    {{- end }}
    {{- if not (hasKey $g.rayStartParams "metrics-export-port") }}
    metrics-export-port: "8080"
    {{- end }}
    {{- with $g.objectStoreMemory }}
    object-store-memory: {{ int64 . | toString | quote }}
    {{- end }}
  # The group's Ray resources in its own field, which KubeRay (>= 1.5) passes to
  # `ray start` and Ray's autoscaler reads to pick the group to start for a pending
  # bundle; KubeRay refuses num-gpus/num-cpus/resources in rayStartParams beside it.
  resources:
    {{- .rayResources | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "ray-llm.labels.selector" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        ray-llm.io/tier: {{ .name }}
        {{- if $g.spot }}
        ray-llm.io/capacity: spot
        {{- end }}
        {{- with $g.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $g.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- with $root.Values.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # Workers never call the Kubernetes API (only the head's autoscaler does).
      automountServiceAccountToken: false
      securityContext:
        {{- include "ray-llm.pod.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: ray-worker
          image: {{ include "ray-llm.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- include "ray-llm.pod.containerSecurityContext" $root | nindent 12 }}
          lifecycle:
            preStop:
              exec:
                command: ["/bin/sh", "-c", "ray stop"]
          # No probes: KubeRay injects its own into a container that has none, and
          # for a RayService worker its readiness probe also checks the node's Serve
          # proxy on the port named "serve" below, so a worker without a proxy
          # (before its first replica, while a proxy drains) leaves the serve Service.
          ports:
            - containerPort: {{ int $root.Values.serve.port }}
              name: serve
            - containerPort: 8080
              name: metrics
          resources:
            {{- include "ray-llm.pod.resources" (dict "resources" $g.resources "gpus" .gpus "gpuResource" $g.gpuResourceName) | nindent 12 }}
          env:
            {{- include "ray-llm.pod.env" $root | nindent 12 }}
            {{- if .gpus }}
            - name: PYTORCH_CUDA_ALLOC_CONF
              value: {{ $g.pytorchCudaAllocConf | quote }}
            {{- end }}
            {{- with $g.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          volumeMounts:
            {{- include "ray-llm.pod.volumeMounts" $root | nindent 12 }}
            {{- if .modelCache }}
            {{- include "ray-llm.modelCache.volumeMount" $root | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "ray-llm.pod.volumes" $root | nindent 8 }}
        {{- if .modelCache }}
        {{- include "ray-llm.modelCache.volume" $root | nindent 8 }}
        {{- end }}
      {{- with $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
