{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "jobcarbon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "jobcarbon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jobcarbon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobcarbon.labels" -}}
helm.sh/chart: {{ include "jobcarbon.chart" . }}
app.kubernetes.io/name: {{ include "jobcarbon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobcarbon
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (ledger or node-agent); pass (dict "ctx" . "component" "ledger"). */}}
{{- define "jobcarbon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobcarbon.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jobcarbon.componentLabels" -}}
{{ include "jobcarbon.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jobcarbon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobcarbon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jobcarbon.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Leader election is on with more than one ledger replica, or when forced. */}}
{{- define "jobcarbon.leaderElection" -}}
{{- if or (gt (int .Values.ledger.replicas) 1) .Values.ledger.leaderElection.enabled }}true{{ end }}
{{- end }}

{{- define "jobcarbon.leaseName" -}}
{{- default (printf "%s-leader" (include "jobcarbon.fullname" .)) .Values.ledger.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobcarbon.configFile" -}}/etc/jobcarbon/config.yaml{{- end }}
