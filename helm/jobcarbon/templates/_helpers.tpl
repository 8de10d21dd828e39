{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "jobcarbon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name.
Dots (allowed in release names) become dashes: Service names are DNS-1035 labels. */}}
{{- define "jobcarbon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of one object: fullname-SUFFIX, the full name cut first so that the suffix always
survives within 63 characters (names stay distinct at any release-name length).
Pass (dict "ctx" . "suffix" "ledger"). */}}
{{- define "jobcarbon.objectName" -}}
{{- $max := int (sub 62 (len .suffix)) }}
{{- printf "%s-%s" (include "jobcarbon.fullname" .ctx | trunc $max | trimSuffix "-") .suffix }}
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
{{- /* A tag given as a number (--set image.tag=2) is a tag all the same. */}}
{{- $tag := toString (default .Chart.AppVersion .Values.image.tag) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Leader election is on with more than one ledger replica, or when forced. */}}
{{- define "jobcarbon.leaderElection" -}}
{{- if or (gt (int .Values.ledger.replicas) 1) .Values.ledger.leaderElection.enabled }}true{{ end }}
{{- end }}

{{- define "jobcarbon.leaseName" -}}
{{- default (include "jobcarbon.objectName" (dict "ctx" . "suffix" "leader")) .Values.ledger.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobcarbon.configFile" -}}/etc/jobcarbon/config.yaml{{- end }}

{{/* --listen for a port: every address, IPv6 and IPv4 (the binary falls back to 0.0.0.0 where
the node has no IPv6). */}}
{{- define "jobcarbon.listen" -}}[::]:{{ . }}{{- end }}

{{/* Pod annotations of a component: the prometheus.io/* scrape annotations (only when
scrapeAnnotations.enabled and no ServiceMonitor/PodMonitor scrapes the pods), then the user's
podAnnotations, which win on the same key; one map, so no key is rendered twice.
Pass (dict "ctx" . "component" "ledger" "port" 9464 "podAnnotations" {...} "extra" {...}). */}}
{{- define "jobcarbon.podAnnotations" -}}
{{- $v := .ctx.Values }}
{{- $annotations := dict }}
{{- $operator := or $v.serviceMonitor.enabled (and (eq .component "node-agent") $v.podMonitor.enabled) }}
{{- if and $v.scrapeAnnotations.enabled (not $operator) }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) }}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
{{- if and $v.auth.enabled (eq .component "ledger") }}
{{- $_ := set $annotations "prometheus.io/scheme" "https" }}
{{- end }}
{{- end }}
{{- range $k, $val := .extra }}{{ $_ := set $annotations $k (toString $val) }}{{ end }}
{{- range $k, $val := .podAnnotations }}{{ $_ := set $annotations $k (toString $val) }}{{ end }}
{{- with $annotations }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* The ledger configuration: config values, with the CCF catch-all appended to
config.systems (systemsCatchAll) unless an entry already matches every node. */}}
{{- define "jobcarbon.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $systems := default (list) $config.systems }}
{{- if .Values.systemsCatchAll.enabled }}
{{- $hasCatchAll := false }}
{{- range $systems }}{{ if not .match }}{{ $hasCatchAll = true }}{{ end }}{{ end }}
{{- if not $hasCatchAll }}
{{- $c := .Values.systemsCatchAll }}
{{- $systems = append $systems (dict "match" (dict) "embodied" $c.embodied "perGpu" $c.perGpu "lifetime" $c.lifetime) }}
{{- end }}
{{- end }}
{{- $_ := set $config "systems" $systems }}
{{- /* The checkpoint goes on the state volume unless config.state.file names another place. */}}
{{- $state := default (dict) $config.state }}
{{- if not $state.file }}
{{- $_ := set $state "file" (printf "%s/ledger.ckpt" (trimSuffix "/" .Values.ledger.stateVolume.mountPath)) }}
{{- end }}
{{- $_ := set $config "state" $state }}
{{- toYaml $config }}
{{- end }}

{{/* The ledger's TLS Secret mount (auth.enabled). */}}
{{- define "jobcarbon.tlsDir" -}}/etc/jobcarbon/tls{{- end }}
