{{/*
The alerting and recording rules, shared by the PrometheusRule and by the plain rules file
under deploy/prometheus/ (rendered from this template with the default values).
Annotation texts are raw strings: Prometheus, not Helm, expands their {{ $labels }}.
*/}}
{{- define "jobcarbon.ruleGroups" -}}
{{- $a := .Values.alerts }}
{{- $extra := $a.additionalLabels -}}
groups:
  - name: jobcarbon
    rules:
      # Evaluated first in the group, so the alert below compares against this evaluation's value.
      # One series per product: the grams-per-request threshold, value and `threshold` label,
      # from alerts.gramsPerRequest (per-product overrides, else the default). Dashboards plot it.
      - record: jobcarbon:inference_carbon_grams_per_request:threshold
        expr: |
          {{- $overrides := $a.gramsPerRequest.products }}
          {{- $default := $a.gramsPerRequest.defaultThreshold }}
          {{- if $overrides }}
          (
          {{- range $i, $product := keys $overrides | sortAlpha }}
          {{- $t := get $overrides $product }}
            {{ if $i }}or {{ end }}label_replace(label_replace(vector({{ $t }}), "product", "{{ $product }}", "", ""), "threshold", "{{ $t }}", "", "")
          {{- end }}
          )
          or on (product)
          {{- end }}
          label_replace(
            (max by (product) (jobcarbon_inference_carbon_grams_per_request) >= bool 0) * 0 + {{ $default }},
            "threshold", "{{ $default }}", "", ""
          )
      - alert: JobcarbonInferenceCarbonHigh
        expr: |
          max by (namespace, product) (jobcarbon_inference_carbon_grams_per_request)
            > on (product) group_left (threshold)
          jobcarbon:inference_carbon_grams_per_request:threshold
        for: {{ $a.gramsPerRequest.for }}
        labels:
          severity: {{ $a.gramsPerRequest.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `Inference carbon of model {{ $labels.product }} is above its threshold` | quote }}
          description: {{ `Each inference request of model {{ $labels.product }} (namespace {{ $labels.namespace }}) costs {{ $value | printf "%.4g" }} gCO2e over the last hour, above the threshold of {{ $labels.threshold }} gCO2e per request.` | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonEnergySourceStale
        expr: |
          time() - max by (source) (jobcarbon_source_last_success_timestamp_seconds) > {{ $a.sourceStale.maxAgeSeconds }}
        for: {{ $a.sourceStale.for }}
        labels:
          severity: {{ $a.sourceStale.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `Energy source {{ $labels.source }} is down or stale` | quote }}
          description: {{ `jobcarbon has not read energy source {{ $labels.source }} successfully for {{ $value | humanizeDuration }}; its workloads' carbon is stale and will be booked when the source is back.` | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonEnergySourceErrors
        expr: |
          sum by (source, kind) (rate(jobcarbon_source_errors_total[5m])) > 0
        for: {{ $a.sourceStale.for }}
        labels:
          severity: {{ $a.sourceStale.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `Energy source {{ $labels.source }} keeps failing ({{ $labels.kind }})` | quote }}
          description: {{ `Reads of energy source {{ $labels.source }} fail with {{ $labels.kind }} errors at {{ $value | printf "%.3g" }} per second.` | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonNodeAgentSamplingFailed
        expr: |
          min by (instance) (jobcarbon_node_nvml_up) == 0
          or
          min by (instance) (jobcarbon_node_pod_resources_up) == 0
          or
          max by (instance) (jobcarbon_node_gpus_allocatable) > max by (instance) (jobcarbon_node_gpus)
        for: {{ $a.sourceStale.for }}
        labels:
          severity: {{ $a.sourceStale.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `Node agent {{ $labels.instance }} cannot sample GPU energy` | quote }}
          description: {{ `The jobcarbon node agent at {{ $labels.instance }} fails to read NVML or the kubelet pod-resources socket, or sees fewer GPUs than the kubelet can allocate (see jobcarbon_node_errors_total and its /healthz); GPU energy of the pods on that node is not measured.` | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonLedgerNotBooking
        expr: |
          time() - max(jobcarbon_last_interval_timestamp_seconds) > {{ $a.ledgerNotBooking.maxAgeSeconds }}
          or
          absent(jobcarbon_last_interval_timestamp_seconds)
        for: {{ $a.ledgerNotBooking.for }}
        labels:
          severity: {{ $a.ledgerNotBooking.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: The jobcarbon ledger is not booking carbon
          description: {{ `No accounting interval has been booked for {{ $value | humanizeDuration }} (or no ledger is scraped at all): carbon is not being measured.` | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonUnallocatedCarbonHigh
        # Share of the carbon that entered in the window (unallocated + workloads' own terms;
        # model_epc and retraining re-allocate carbon already counted, so they are left out).
        expr: |
          sum(increase(jobcarbon_unallocated_grams_total[{{ $a.unallocatedShare.window }}]))
          /
          (
            sum(increase(jobcarbon_unallocated_grams_total[{{ $a.unallocatedShare.window }}]))
            + sum(increase(jobcarbon_workload_carbon_grams_total{term!~"model_epc|retraining"}[{{ $a.unallocatedShare.window }}]))
          )
          > {{ $a.unallocatedShare.threshold }}
        for: {{ $a.unallocatedShare.for }}
        labels:
          severity: {{ $a.unallocatedShare.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: Too much carbon is unallocated
          description: {{ printf "{{ $value | humanizePercentage }} of the carbon of the last %s went to no job or product (threshold %v); see jobcarbon_unallocated_grams_total by reason." $a.unallocatedShare.window $a.unallocatedShare.threshold | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md#alerts
      - alert: JobcarbonGpuEnergyUnmapped
        # GPU lines naming no pod on nodes whose GPUs pods hold: dcgm-exporter without its
        # pod-resources mount, or a pod mapping that lags.
        expr: |
          sum(rate(jobcarbon_gpu_energy_joules_total{part="unmapped"}[{{ $a.gpuUnmapped.window }}]))
          /
          sum(rate(jobcarbon_gpu_energy_joules_total{part="measured"}[{{ $a.gpuUnmapped.window }}]))
          > {{ $a.gpuUnmapped.threshold }}
        for: {{ $a.gpuUnmapped.for }}
        labels:
          severity: {{ $a.gpuUnmapped.severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: GPU energy cannot be mapped to pods
          description: {{ printf "{{ $value | humanizePercentage }} of the GPU energy is on GPU lines that name no pod while pods hold the GPUs (threshold %v); it is booked as unallocated gpu_unmapped. Check that dcgm-exporter mounts /var/lib/kubelet/pod-resources." $a.gpuUnmapped.threshold | quote }}
          runbook_url: https://github.com/jobcarbon/jobcarbon/blob/main/docs/telemetry.md#dcgm
{{- end }}
