{{/*
The alerting and recording rules, shared by the PrometheusRule and by the plain rules file
under deploy/prometheus/ (rendered from this template with the default values).
Annotation texts are raw strings: Prometheus, not Helm, expands their {{ $labels }}.
Every aggregation keeps alerts.clusterLabel ($c), so one Prometheus (or Thanos) over several
clusters alerts once per cluster; each alert links to its own section of docs/runbooks.md.
*/}}

{{/* An alert's labels: severity, the alert's own labels, then alerts.additionalLabels.
Pass (dict "alert" .Values.alerts.X "extra" .Values.alerts.additionalLabels). */}}
{{- define "jobcarbon.alertLabels" -}}
{{- $labels := merge (dict "severity" .alert.severity) (default (dict) .alert.labels) (default (dict) .extra) }}
{{- toYaml $labels }}
{{- end }}

{{/* The runbook of one alert: (dict "base" .Values.alerts.runbookBaseUrl "alert" "JobcarbonX"). */}}
{{- define "jobcarbon.runbook" -}}
{{- printf "%s#%s" .base (lower .alert) }}
{{- end }}

{{/* The energy sources the ledger reads with this config (jobcarbon-ledger sources.rs). */}}
{{- define "jobcarbon.energySources" -}}
{{- $energy := default (dict) .Values.config.energy }}
{{- $sources := list }}
{{- if ne (toString (default "auto" $energy.kepler)) "off" }}{{ $sources = append $sources "kepler" }}{{ end }}
{{- $gpu := toString (default "dcgm" $energy.gpu) }}
{{- if eq $gpu "dcgm" }}{{ $sources = append $sources "dcgm" }}{{ end }}
{{- if eq $gpu "node-agent" }}{{ $sources = append $sources "node-agent" }}{{ end }}
{{- join " " $sources }}
{{- end }}

{{- define "jobcarbon.ruleGroups" -}}
{{- $a := .Values.alerts }}
{{- $c := $a.clusterLabel }}
{{- $extra := $a.additionalLabels }}
{{- $base := $a.runbookBaseUrl }}
{{- $isInf := `{{ if eq ($value | printf "%f") "+Inf" }}` -}}
groups:
  - name: jobcarbon
    rules:
      # Evaluated first in the group, so the alert below compares against this evaluation's value.
      # One series per cluster and product: the grams-per-request threshold, value and `threshold`
      # label, from alerts.gramsPerRequest (per-product overrides, else the default). Dashboards plot it.
      - record: jobcarbon:inference_carbon_grams_per_request:threshold
        expr: |
          {{- $overrides := $a.gramsPerRequest.products }}
          {{- $default := $a.gramsPerRequest.defaultThreshold }}
          {{- if $overrides }}
          (
          {{- range $i, $product := keys $overrides | sortAlpha }}
          {{- $t := get $overrides $product }}
            {{ if $i }}or {{ end }}label_replace(group by ({{ $c }}, product) (jobcarbon_inference_carbon_grams_per_request{product="{{ $product }}"}) * 0 + {{ $t }}, "threshold", "{{ $t }}", "", "")
          {{- end }}
          )
          or on ({{ $c }}, product)
          {{- end }}
          label_replace(
            group by ({{ $c }}, product) (jobcarbon_inference_carbon_grams_per_request) * 0 + {{ $default }},
            "threshold", "{{ $default }}", "", ""
          )
      {{- with $a.gramsPerRequest }}{{ if .enabled }}
      - alert: JobcarbonInferenceCarbonHigh
        expr: |
          max by ({{ $c }}, namespace, product) (jobcarbon_inference_carbon_grams_per_request)
            > on ({{ $c }}, product) group_left (threshold)
          jobcarbon:inference_carbon_grams_per_request:threshold
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: {{ `Inference carbon of model {{ $labels.product }} is above its threshold` | quote }}
          description: {{ `Each inference request of model {{ $labels.product }} (namespace {{ $labels.namespace }}) costs {{ $value | printf "%.4g" }} gCO2e over the last hour, above the threshold of {{ $labels.threshold }} gCO2e per request.` | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonInferenceCarbonHigh") }}
      {{- end }}{{ end }}
      {{- with $a.sourceStale }}{{ if .enabled }}
      - alert: JobcarbonEnergySourceStale
        # Stale: the last successful read is too old. Never read: a source with errors, or one
        # this config reads, on a scraped ledger, without any successful read (value +Inf).
        expr: |
          (
            time() - max by ({{ $c }}, source) (jobcarbon_source_last_success_timestamp_seconds) > {{ .maxAgeSeconds }}
          )
          or
          (
            (
              group by ({{ $c }}, source) (jobcarbon_source_errors_total)
              {{- range splitList " " (include "jobcarbon.energySources" $) }}
              or label_replace(group by ({{ $c }}) (jobcarbon_tracked_pods), "source", "{{ . }}", "", "")
              {{- end }}
            )
            unless on ({{ $c }}, source) jobcarbon_source_last_success_timestamp_seconds
          ) * +Inf
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: {{ `Energy source {{ $labels.source }} is down or stale` | quote }}
          description: {{ print $isInf `jobcarbon has never read energy source {{ $labels.source }} successfully{{ else }}jobcarbon has not read energy source {{ $labels.source }} successfully for {{ $value | humanizeDuration }}{{ end }}; its workloads' carbon is not booked until the source is back (then the gap is booked).` | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonEnergySourceStale") }}
      {{- end }}{{ end }}
      {{- with $a.sourceErrors }}{{ if .enabled }}
      - alert: JobcarbonEnergySourceErrors
        expr: |
          sum by ({{ $c }}, source, kind) (rate(jobcarbon_source_errors_total[5m])) > 0
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: {{ `Energy source {{ $labels.source }} keeps failing ({{ $labels.kind }})` | quote }}
          description: {{ `Reads of energy source {{ $labels.source }} fail with {{ $labels.kind }} errors at {{ $value | printf "%.3g" }} per second.` | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonEnergySourceErrors") }}
      {{- end }}{{ end }}
      {{- with $a.nodeAgentSampling }}{{ if .enabled }}
      - alert: JobcarbonNodeAgentSamplingFailed
        # Per agent: `node` (relabelled from the pod's node by the chart's monitors) and `instance`.
        expr: |
          min by ({{ $c }}, node, instance) (jobcarbon_node_nvml_up) == 0
          or
          min by ({{ $c }}, node, instance) (jobcarbon_node_pod_resources_up) == 0
          or
          max by ({{ $c }}, node, instance) (jobcarbon_node_gpus_allocatable)
            > on ({{ $c }}, node, instance)
          max by ({{ $c }}, node, instance) (jobcarbon_node_gpus)
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: {{ `Node agent on {{ with $labels.node }}node {{ . }}{{ else }}{{ $labels.instance }}{{ end }} cannot sample GPU energy` | quote }}
          description: {{ `The jobcarbon node agent at {{ $labels.instance }}{{ with $labels.node }} (node {{ . }}){{ end }} fails to read NVML or the kubelet pod-resources socket, or sees fewer GPUs than the kubelet can allocate (see jobcarbon_node_errors_total and its /healthz); GPU energy of the pods on that node is not measured.` | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonNodeAgentSamplingFailed") }}
      {{- end }}{{ end }}
      {{- with $a.ledgerNotBooking }}{{ if .enabled }}
      - alert: JobcarbonLedgerNotBooking
        # Too old a booking; a scraped ledger that never booked; no ledger scraped at all.
        expr: |
          time() - max by ({{ $c }}) (jobcarbon_last_interval_timestamp_seconds) > {{ .maxAgeSeconds }}
          or
          (group by ({{ $c }}) (jobcarbon_tracked_pods) unless on ({{ $c }}) jobcarbon_last_interval_timestamp_seconds) * +Inf
          or
          absent(jobcarbon_tracked_pods) * +Inf
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: The jobcarbon ledger is not booking carbon
          description: {{ print $isInf `No accounting interval has been booked since the ledger started, or no ledger is scraped at all{{ else }}No accounting interval has been booked for {{ $value | humanizeDuration }}{{ end }}. Carbon is not being booked; the ledger books the gap from Prometheus history once it runs again.` | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonLedgerNotBooking") }}
      {{- end }}{{ end }}
      {{- with $a.unallocatedShare }}{{ if .enabled }}
      - alert: JobcarbonUnallocatedCarbonHigh
        # Share of the carbon that entered in the window (unallocated + workloads' own terms from the totals family;
        # model_epc and retraining re-allocate carbon already counted, so they are left out).
        expr: |
          sum by ({{ $c }}) (increase(jobcarbon_unallocated_grams_total[{{ .window }}]))
          / on ({{ $c }})
          (
            sum by ({{ $c }}) (increase(jobcarbon_unallocated_grams_total[{{ .window }}]))
            + on ({{ $c }})
            sum by ({{ $c }}) (increase(jobcarbon_carbon_grams_total{term!~"model_epc|retraining"}[{{ .window }}]))
          )
          > {{ .threshold }}
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: Too much carbon is unallocated
          description: {{ printf "{{ $value | humanizePercentage }} of the carbon of the last %s went to no job or product (threshold %v); see jobcarbon_unallocated_grams_total by reason." .window .threshold | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonUnallocatedCarbonHigh") }}
      {{- end }}{{ end }}
      {{- with $a.gpuUnmapped }}{{ if .enabled }}
      - alert: JobcarbonGpuEnergyUnmapped
        # GPU lines naming no pod on nodes whose GPUs pods hold: dcgm-exporter without its
        # pod-resources mount, or a pod mapping that lags.
        expr: |
          sum by ({{ $c }}) (rate(jobcarbon_gpu_energy_joules_total{part="unmapped"}[{{ .window }}]))
          / on ({{ $c }})
          sum by ({{ $c }}) (rate(jobcarbon_gpu_energy_joules_total{part="measured"}[{{ .window }}]))
          > {{ .threshold }}
        for: {{ .for }}
        labels:
          {{- include "jobcarbon.alertLabels" (dict "alert" . "extra" $extra) | nindent 10 }}
        annotations:
          summary: GPU energy cannot be mapped to pods
          description: {{ printf "{{ $value | humanizePercentage }} of the GPU energy is on GPU lines that name no pod while pods hold the GPUs (threshold %v); it is booked as unallocated gpu_unmapped. Check that dcgm-exporter mounts /var/lib/kubelet/pod-resources." .threshold | quote }}
          runbook_url: {{ include "jobcarbon.runbook" (dict "base" $base "alert" "JobcarbonGpuEnergyUnmapped") }}
      {{- end }}{{ end }}
{{- end }}
