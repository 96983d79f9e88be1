{{/* The chart name, or nameOverride. 63 characters: the DNS label limit of names and label values. */}}
{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name prefix of every resource: fullnameOverride, else "<release>-<name>", else the release name
when it already contains the chart name. */}}
{{- define "modeldeploy.fullname" -}}
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

{{/* The operator image tag in use: the tag, else the chart's appVersion. */}}
{{- define "modeldeploy.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest} ("image") and the chart ("chart").
A digest wins over the tag: the pod then runs exactly those bytes, whatever the tag points at later. */}}
{{- define "modeldeploy.imageRef" -}}
{{- $repo := printf "%s/%s" .image.registry .image.repository }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "modeldeploy.image" -}}
{{- include "modeldeploy.imageRef" (dict "image" .Values.image "chart" .Chart) }}
{{- end }}

{{/* The model-puller image the operator puts into Triton pods. */}}
{{- define "modeldeploy.pullerImage" -}}
{{- include "modeldeploy.imageRef" (dict "image" .Values.modelPuller.image "chart" .Chart) }}
{{- end }}

{{/* Labels that select the operator pod; never change them in an upgrade (selectors are immutable). */}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every resource of the chart. */}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ include "modeldeploy.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The API access the operator needs inside each namespace it watches: exact verbs, no wildcards.
Used by the ClusterRole (all namespaces) and by the per-namespace Roles (watchNamespaces).

Secrets are absent on purpose: a ModelDeployment names its model-store Secret
(spec.model.storageSecretRef) and the Triton pod mounts it; the operator only writes that name into the
pod spec and never reads the Secret, so it cannot leak the model store's credentials.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
# ModelDeployments: read them, and write only their status (the operator never writes .spec).
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [get, list, watch]
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/status]
  verbs: [patch]
# Never requested: the children's ownerReferences set blockOwnerDeletion (so a foreground deletion of a
# ModelDeployment waits for them), and the OwnerReferencesPermissionEnforcement admission plugin lets
# only a user who may update the owner's finalizers set it. It checks this on every child create. The
# operator adds no finalizer (it makes no request to this subresource at all).
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/finalizers]
  verbs: [update]
# The children of a ModelDeployment, applied with server-side apply (a patch; create when the apply
# makes the object) and owned by it, so the garbage collector deletes them with it. list and watch:
# kopf's informer cache, which the reconciler reads its children from (and a change wakes the owner);
# delete: children no longer wanted (a finished canary, the HPA turned off). No get: never read singly.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# ConfigMaps: get only. A gate's golden set is a ConfigMap of the user's, in the ModelDeployment's
# namespace (spec.rollout.gates.goldenSet.configMapKeyRef), read by name once per gate run. The
# operator writes none: the generated config.pbtxt travels in the pod template (docs/security.md,
# "The ConfigMap read"). RBAC cannot confine get to names it does not know, so it covers every
# ConfigMap in scope.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
# The NetworkPolicy around each ModelDeployment's Triton pods; deleted when spec.networkPolicy.enabled
# is turned off.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
# Scrape config for analysis: always wanted while its CRD is installed, so never deleted (the garbage
# collector removes it with its owner). Watched, as every child: the operator reads it from its cache.
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [list, watch, create, patch]
# Alerts after the rollout (spec.alerts), where the PrometheusRule CRD is installed; pruned when
# spec.alerts turns every alert off. Watched, as every child: the operator reads it from its cache.
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [list, watch, create, patch, delete]
# A canary that is not ready: the operator lists its pods to tell a crash or an unschedulable pod
# (fail fast) from a model that is still loading (wait). Read-only, and list only.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Canary traffic routing, whichever router spec.traffic names; pruned when the router changes.
# Watched: the operator reads them from its cache, and a hand edit wakes the owner at once.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, grpcroutes]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [list, watch, create, patch, delete]
# Events that explain each rollout step: always a new core/v1 Event (never patched, never events.k8s.io).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Cluster-scoped access, needed in both modes: kopf discovers resources through CRDs, and the operator
checks whether the PodMonitor and PrometheusRule CRDs exist before it renders them. */}}
{{- define "modeldeploy.crdRules" -}}
# CRDs (cluster-scoped): kopf's resource discovery, and whether the PodMonitor and PrometheusRule
# CRDs are installed.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}

{{/* Namespaced mode's cluster-scoped extra: kopf, given --namespace flags, lists and watches namespaces to
learn which of the listed ones exist (and notices one deleted or created later). Cluster-wide, it watches
every resource across all namespaces and never looks at namespaces. */}}
{{- define "modeldeploy.namespaceListRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Leader election: the one Lease, by name, in the release's namespace. create cannot be limited to a
name (the name is in the body), so it is granted for the namespace; get and update only for it. */}}
{{- define "modeldeploy.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "modeldeploy.fullname" . }}]
  verbs: [get, update]
{{- end }}

{{/*
The rules in "rules" (a list of PolicyRules), one line per resource, as `kubectl describe role` names
resources (configmaps, deployments.apps, modeldeployments.modeldeploy.io/status), with their verbs.
NOTES.txt prints what the chart grants with it, from the very rules the Roles are made of, so the notes
cannot drift from the grant (tests/test_helm_chart.py and tests/test_rbac_proof.py read them back).
*/}}
{{- define "modeldeploy.describeRules" -}}
{{- range .rules }}
{{- $rule := . }}
{{- range $rule.apiGroups }}
{{- $group := . }}
{{- range $rule.resources }}
{{- $parts := splitList "/" . }}
{{- $name := first $parts }}
{{- if $group }}{{ $name = printf "%s.%s" $name $group }}{{ end }}
{{- if gt (len $parts) 1 }}{{ $name = printf "%s/%s" $name (last $parts) }}{{ end }}
{{ $.indent }}{{ $name }}: {{ join ", " $rule.verbs }}
{{- with $rule.resourceNames }} (only {{ join ", " . }}){{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The resources of "rules" with a read verb (get, list or watch) that is not limited by name, joined:
what the grant lets the operator read, every object of the kind in its scope. */}}
{{- define "modeldeploy.readableKinds" -}}
{{- $out := list }}
{{- range .rules }}
{{- $rule := . }}
{{- if and (not $rule.resourceNames) (or (has "get" $rule.verbs) (has "list" $rule.verbs) (has "watch" $rule.verbs)) }}
{{- range $rule.apiGroups }}
{{- $group := . }}
{{- range $rule.resources }}
{{- $out = append $out (ternary . (printf "%s.%s" . $group) (eq $group "")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- join ", " $out }}
{{- end }}


{{/* For people, not the operator: aggregated into the built-in admin and edit roles (rbac.yaml). */}}
{{- define "modeldeploy.aggregateEditRules" -}}
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [get, list, watch, create, update, patch, delete, deletecollection]
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/status]
  verbs: [get]
{{- end }}

{{/* For people, not the operator: aggregated into the built-in view role (rbac.yaml). */}}
{{- define "modeldeploy.aggregateViewRules" -}}
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments, modeldeployments/status]
  verbs: [get, list, watch]
{{- end }}
