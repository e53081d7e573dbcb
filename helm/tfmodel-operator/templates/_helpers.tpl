{{- define "tfmodel-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tfmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tfmodel-operator.labels" -}}
{{ include "tfmodel-operator.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tfmodel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tfmodel-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The least privileges the operator needs; shared by the ClusterRole and the Role. */}}
{{- define "tfmodel-operator.rules" -}}
- apiGroups: [serving.tfmodel.io]
  resources: [tfmodels]
  verbs: [get, list, watch, patch]
- apiGroups: [serving.tfmodel.io]
  resources: [tfmodels/status]
  verbs: [get, patch]
# blockOwnerDeletion on children needs this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [serving.tfmodel.io]
  resources: [tfmodels/finalizers]
  verbs: [update]
# list + watch: the operator watches its children (by its managed-by label) instead of
# reading them every round; get: the ownership check before creating one; create + patch:
# server-side apply. delete only where a child can leave the spec (HPA, PDB).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Only used when the cluster has the Prometheus Operator's CRD.
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, create, patch]
# Read-only: pods (watched) to ask each server for GET /v1/models and its metrics, PVCs to
# report a missing claim.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# get only: the Secrets a TFModel's spec.security names, for the operator's own probes and
# scrapes of servers with TLS / mTLS / tokens (probe_transport.py).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
