{{/*
Names, labels and the pod security every workload of the chart shares.
*/}}

{{/* Prefix of every object's name. */}}
{{- define "teeroute.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "teeroute" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "teeroute-%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "teeroute.operator.name" -}}{{ include "teeroute.fullname" . }}-operator{{- end -}}
{{- define "teeroute.gateway.name" -}}{{ include "teeroute.fullname" . }}-gateway{{- end -}}

{{/* Labels on every object but pods and the objects selecting them (which add a selector). */}}
{{- define "teeroute.labels" -}}
{{ include "teeroute.chartLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "teeroute.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: teeroute
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/*
Pod selectors. app.kubernetes.io/name is fixed: the NetworkPolicy the operator writes for
each MinerPool admits the pods labelled teeroute-gateway and teeroute-operator only.
*/}}
{{- define "teeroute.operator.selector" -}}
app.kubernetes.io/name: teeroute-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "teeroute.gateway.selector" -}}
app.kubernetes.io/name: teeroute-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* An image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "teeroute.image" -}}
{{- $image := index . 0 -}}{{- $root := index . 1 -}}
image: {{ printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) | quote }}
imagePullPolicy: {{ $image.pullPolicy }}
{{- end -}}

{{/* Pod-level security: the restricted Pod Security Standard. */}}
{{- define "teeroute.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: the restricted Pod Security Standard. */}}
{{- define "teeroute.containerSecurityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling and pulling, shared by both Deployments: (component values, root). */}}
{{- define "teeroute.podPlacement" -}}
{{- $c := index . 0 -}}{{- $root := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
{{- range . }}
  - operator: {{ .operator }}
    {{- with .key }}
    key: {{ . | quote }}
    {{- end }}
    {{- with .value }}
    value: {{ . | quote }}
    {{- end }}
    {{- with .effect }}
    effect: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Container resources from the values, leaving out what is empty. */}}
{{- define "teeroute.resources" -}}
resources:
{{- range $kind := list "requests" "limits" }}
{{- $list := index $ $kind }}
{{- if or $list.cpu $list.memory }}
  {{ $kind }}:
    {{- with $list.cpu }}
    cpu: {{ . | quote }}
    {{- end }}
    {{- with $list.memory }}
    memory: {{ . | quote }}
    {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A NetworkPolicy peer from a values.networkPolicy peer. */}}
{{- define "teeroute.peer" -}}
{{- if .cidr }}
- ipBlock:
    cidr: {{ .cidr | quote }}
{{- else }}
- {{- if kindIs "map" .namespaceLabels }}
  namespaceSelector:
    matchLabels: {{- toYaml .namespaceLabels | nindent 6 }}
  {{- end }}
  {{- if kindIs "map" .podLabels }}
  podSelector:
    matchLabels: {{- toYaml .podLabels | nindent 6 }}
  {{- end }}
{{- end }}
{{- end -}}
