{{- define "flotilla.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flotilla.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flotilla.labels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flotilla.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Secret names: the user's own, or the one this chart makes. */}}
{{- define "flotilla.databaseSecret" -}}
{{- .Values.database.existingSecret | default (include "flotilla.fullname" .) -}}
{{- end -}}
{{- define "flotilla.blobSecret" -}}
{{- .Values.blob.existingSecret | default (include "flotilla.fullname" .) -}}
{{- end -}}
{{- define "flotilla.adminSecret" -}}
{{- .Values.adminToken.existingSecret | default (include "flotilla.fullname" .) -}}
{{- end -}}
{{- define "flotilla.hasBlobCredentials" -}}
{{- if or .Values.blob.existingSecret .Values.blob.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/* Environment shared by the server and the migration job. */}}
{{- define "flotilla.databaseEnv" -}}
- name: FLOTILLA_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flotilla.databaseSecret" . }}
      key: {{ .Values.database.secretKey }}
{{- end -}}
