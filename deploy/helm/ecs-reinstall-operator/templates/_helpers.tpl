{{/* Name of the chart, overridable. */}}
{{- define "ecs-reinstall-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, prefixed by the chart name unless it contains it. */}}
{{- define "ecs-reinstall-operator.fullname" -}}
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

{{/*
Name of cluster-scoped objects (ClusterRole, ClusterRoleBinding): the release namespace is part of it, so two
releases with the same name in different namespaces (e.g. one per team, each with its watchNamespaces) never
share or overwrite each other's cluster-wide grants.
*/}}
{{- define "ecs-reinstall-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ecs-reinstall-operator.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "ecs-reinstall-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecs-reinstall-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecs-reinstall-operator.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- define "ecs-reinstall-operator.labels" -}}
helm.sh/chart: {{ include "ecs-reinstall-operator.chart" . | quote }}
{{ include "ecs-reinstall-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ecs-reinstall-operator
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{- define "ecs-reinstall-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecs-reinstall-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecs-reinstall-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True (non-empty) when the operator serves every namespace. */}}
{{- define "ecs-reinstall-operator.clusterwide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator uses, in every namespace it serves. Least privilege, as
recorded from the operator's real API calls (tests/deploy/test_operator_on_kube_emulator.py):
- ecsreinstalls: list and watch (kopf's watch stream, the startup listing; an EcsReinstallSet's children by their
  set label), get (re-reading one resource), patch (only metadata.finalizers: held while a reinstall request is on
  its way to the cloud; no kopf progress annotations: it only has event handlers), delete (only a finished
  resource whose spec.ttlSecondsAfterFinished has passed, with uid and resourceVersion preconditions), create (an
  EcsReinstallSet's children, in the set's namespace, owned by the set: controller ownerReference without
  blockOwnerDeletion, so no grant on ecsreinstallsets/finalizers is needed)
- ecsreinstalls/status: patch (phase, conditions, job)
- ecsreinstallsets: list and watch (kopf's watch stream; the listing when this replica becomes the leader), get
  (each rollout pass re-reads its set); never patched, updated or deleted (the children go with their set through
  the garbage collector)
- ecsreinstallsets/status: patch (the rollout: selection, admitted, succeeded, failed, phase, conditions; a merge
  patch conditional on the resourceVersion read)
- secrets, configmaps: get only (credentials, admin password, user data; by name, never listed)
- events: create (a Kubernetes Event per transition)
*/}}
{{- define "ecs-reinstall-operator.namespacedRules" -}}
- apiGroups: ["ecs.reinstall.dev"]
  resources: ["ecsreinstalls"]
  verbs: ["get", "list", "watch", "patch", "delete", "create"]
- apiGroups: ["ecs.reinstall.dev"]
  resources: ["ecsreinstalls/status"]
  verbs: ["patch"]
- apiGroups: ["ecs.reinstall.dev"]
  resources: ["ecsreinstallsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ecs.reinstall.dev"]
  resources: ["ecsreinstallsets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}


{{/*
The namespace rule that credentials.allowedNamespaceSelector needs (cluster-wide mode only, see checkTenancy): the
operator asks the API server which namespaces match the selector (GET /api/v1/namespaces?labelSelector=..., and
once at start-up with limit=1 to check it), so that the API server's own label selector semantics decide.
*/}}
{{- define "ecs-reinstall-operator.namespaceSelectorRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list"]
{{- end }}

{{/* serverOwnership.extraValues as the operator reads it: namespace=value1|value2,namespace2=value3 (sorted). */}}
{{- define "ecs-reinstall-operator.ownerTagValues" -}}
{{- $pairs := list }}
{{- range $namespace, $values := .Values.serverOwnership.extraValues }}
{{- $pairs = append $pairs (printf "%s=%s" $namespace (join "|" $values)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Tenancy settings that the schema cannot check: fail the render with the reason. */}}
{{- define "ecs-reinstall-operator.checkTenancy" -}}
{{- if and .Values.credentials.allowedNamespaceSelector .Values.watchNamespaces }}
{{- fail "credentials.allowedNamespaceSelector needs list on namespaces, a cluster-scoped grant that namespaced mode (watchNamespaces) does without: list the namespaces in credentials.allowedNamespaces instead" }}
{{- end }}
{{- if and .Values.serverOwnership.extraValues (not .Values.serverOwnership.tagKey) }}
{{- fail "serverOwnership.extraValues lists owner tag values but serverOwnership.tagKey is empty: set the tag key (e.g. ecs-reinstall-namespace), or leave extraValues empty" }}
{{- end }}
{{- end }}

{{/* The leader election Lease, in the release namespace: one per release, so releases never share a leader. */}}
{{- define "ecs-reinstall-operator.leaseName" -}}
{{- include "ecs-reinstall-operator.fullname" . }}
{{- end }}

{{/* Leader election settings that the schema cannot check: fail the render with the reason. */}}
{{- define "ecs-reinstall-operator.checkLeaderElection" -}}
{{- $le := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled: without it every replica would run reinstalls" }}
{{- end }}
{{- if and $le.enabled (not (lt (float64 $le.renewDeadlineSeconds) (float64 $le.leaseSeconds))) }}
{{- fail "leaderElection.renewDeadlineSeconds must be less than leaderElection.leaseSeconds" }}
{{- end }}
{{- if and $le.enabled (not (lt (float64 $le.retryPeriodSeconds) (float64 $le.renewDeadlineSeconds))) }}
{{- fail "leaderElection.retryPeriodSeconds must be less than leaderElection.renewDeadlineSeconds" }}
{{- end }}
{{- end }}

{{/*
The operator's defaults, unless requireDefaults is false: without a default region (or endpoint) every EcsReinstall
without spec.region fails, without default credentials every one without spec.credentialsSecretRef does. Fail the
install instead, naming what to set.
*/}}
{{- define "ecs-reinstall-operator.checkDefaults" -}}
{{- if or .Values.requireDefaults (not (hasKey .Values "requireDefaults")) }}
{{- $missing := list }}
{{- if not (or .Values.region .Values.endpoint) }}
{{- $missing = append $missing "no default region: set region (e.g. --set region=ap-southeast-1) or endpoint, used by every EcsReinstall without spec.region" }}
{{- end }}
{{- if not .Values.credentials.existingSecret }}
{{- $missing = append $missing "no default credentials: set credentials.existingSecret to the name of a Secret in the release namespace with the keys accessKey and secretKey, used by every EcsReinstall without spec.credentialsSecretRef" }}
{{- end }}
{{- with $missing }}
{{- fail (printf "%s. If every EcsReinstall sets its own spec.region and spec.credentialsSecretRef, set requireDefaults=false instead" (join "; " .)) }}
{{- end }}
{{- end }}
{{- end }}
