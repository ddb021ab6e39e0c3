{{/* The release's name, cut to the 63 characters a label value may have. */}}
{{- define "agent-guard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agent-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agent-guard.labels" -}}
{{ include "agent-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The runtimes' directories of runtime specs (docs/config.md, "Containers"): only these
     are mounted, not the runtimes' sockets beside them. */}}
{{- define "agent-guard.containerdTasks" -}}
{{- $c := .Values.config.containers | default dict -}}
{{- printf "%s/io.containerd.runtime.v2.task" ($c.containerdState | default "/run/containerd") -}}
{{- end -}}

{{- define "agent-guard.crioContainers" -}}
{{- $c := .Values.config.containers | default dict -}}
{{- printf "%s/overlay-containers" ($c.crioRunRoot | default "/run/containers/storage") -}}
{{- end -}}
