{{/* Names and labels shared by the templates. */}}

{{- define "gitmesh.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gitmesh.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "gitmesh.controllerSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The controller's labels as a label selector string, for --leader-pod-selector. */}}
{{- define "gitmesh.controllerSelectorString" -}}
app.kubernetes.io/name={{ .Chart.Name }},app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=controller
{{- end -}}

{{/* The label the leading controller replica puts on its own Pod. */}}
{{- define "gitmesh.leaderLabel" -}}
gitmesh.io/leader: "true"
{{- end -}}

{{- define "gitmesh.gatewaySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "gitmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "gitmesh.serviceAccount" -}}{{ include "gitmesh.fullname" . }}{{- end -}}
{{- define "gitmesh.xdsService" -}}{{ include "gitmesh.fullname" . }}-xds{{- end -}}
{{- define "gitmesh.adminService" -}}{{ include "gitmesh.fullname" . }}-admin{{- end -}}
{{- define "gitmesh.injectorService" -}}{{ include "gitmesh.fullname" . }}-injector{{- end -}}
{{- define "gitmesh.injectorSecret" -}}{{ include "gitmesh.fullname" . }}-injector-tls{{- end -}}
{{- define "gitmesh.injectorConfig" -}}{{ include "gitmesh.fullname" . }}-injector{{- end -}}
{{- define "gitmesh.webhookName" -}}{{ include "gitmesh.fullname" . }}-sidecar-injector-{{ .Release.Namespace }}{{- end -}}
{{- define "gitmesh.adminTokenSecret" -}}{{ .Values.controller.adminTokenSecret | default (printf "%s-admin-token" (include "gitmesh.fullname" .)) }}{{- end -}}

{{/* The xDS address sidecars and gateways dial. */}}
{{- define "gitmesh.xdsAddress" -}}
{{ include "gitmesh.xdsService" . }}.{{ .Release.Namespace }}.svc:{{ .Values.controller.xdsPort }}
{{- end -}}

{{/* The names the injector's serving certificate is valid for. */}}
{{- define "gitmesh.injectorHosts" -}}
{{- $svc := include "gitmesh.injectorService" . -}}
{{- $hosts := list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- join "," (concat $hosts .Values.injector.webhook.certHosts) -}}
{{- end -}}

{{/* git.url is required; at most one of branch, tag, semver, commit. */}}
{{- define "gitmesh.validate" -}}
{{- $_ := required "git.url is required: the policy repository, e.g. --set git.url=https://github.com/acme/mesh-policy" .Values.git.url -}}
{{- $refs := 0 -}}
{{- range (list .Values.git.branch .Values.git.tag .Values.git.semver .Values.git.commit) -}}
{{- if . }}{{ $refs = add1 $refs }}{{ end -}}
{{- end -}}
{{- if gt $refs 1 -}}
{{- fail "set at most one of git.branch, git.tag, git.semver, git.commit" -}}
{{- end -}}
{{- end -}}

{{/* The downward API identity a proxy announces (POD_NAME, ...). */}}
{{- define "gitmesh.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: metadata.namespace
- name: SERVICE_ACCOUNT
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: spec.serviceAccountName
- name: INSTANCE_IP
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: status.podIP
{{- end -}}

{{/* The restricted Pod Security Standard, for non-root containers. */}}
{{- define "gitmesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end -}}
