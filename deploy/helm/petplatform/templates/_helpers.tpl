{{/* The program's side (generated from app/registry.py by tools/helm_values.py). */}}
{{- define "petplatform.program" -}}
{{- .Files.Get "files/registry.yaml" -}}
{{- end -}}

{{- define "petplatform.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "petplatform.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "petplatform.labels" -}}
{{ include "petplatform.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: petplatform
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "petplatform.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "petplatform.secretName" -}}
{{- $s := index .root.Values.secrets .kind -}}
{{- default (printf "%s-%s" (include "petplatform.fullname" .root) .kind) $s.existingSecret -}}
{{- end -}}

{{/* Settings of one workload: workloadDefaults, then its own entry over them. */}}
{{- define "petplatform.workloadValues" -}}
{{- $own := deepCopy (default dict .own) -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.workloadDefaults) $own) -}}
{{- end -}}

{{- define "petplatform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "petplatform.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The configuration every program pod reads: app-config and the four Secrets. */}}
{{- define "petplatform.envFrom" -}}
- configMapRef:
    name: {{ include "petplatform.fullname" . }}-app-config
{{- range $kind := list "database" "jwt" "oauth" "api-keys" }}
- secretRef:
    name: {{ include "petplatform.secretName" (dict "root" $ "kind" $kind) }}
{{- end }}
{{- end -}}

{{- define "petplatform.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end -}}

{{/*
One workload: Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget. Arguments (a dict):
root, component, values (workloadValues), ports (list of {name, port}), probe ({grpc: port} | {http: port,
path} | {tcp: port}), and optionally args, image, pullPolicy, uid, program (true: the petplatform image with
app-config and the Secrets), env (list), volumes, volumeMounts, annotations.
*/}}
{{- define "petplatform.workload" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := printf "%s-%s" (include "petplatform.fullname" $root) .component -}}
{{- $sel := dict "root" $root "component" .component -}}
{{- $uid := default 10001 .uid -}}
{{- $probe := .probe -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "petplatform.labels" $sel | nindent 4 }}
spec:
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "petplatform.selectorLabels" $sel | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}
  template:
    metadata:
      labels:
        {{- include "petplatform.labels" $sel | nindent 8 }}
      annotations:
        {{- if .program }}
        {{- include "petplatform.checksums" $root | nindent 8 }}
        {{- end }}
        {{- with .annotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "petplatform.podSecurityContext" $uid | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "petplatform.selectorLabels" $sel | nindent 14 }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "petplatform.selectorLabels" $sel | nindent 14 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ default (include "petplatform.image" $root) .image }}
          imagePullPolicy: {{ default $root.Values.image.pullPolicy .pullPolicy }}
          {{- with .command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- if .program }}
          envFrom:
            {{- include "petplatform.envFrom" $root | nindent 12 }}
          {{- end }}
          env:
            - name: OTEL_SERVICE_NAME
              value: {{ printf "petplatform-%s" .component }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- range $k, $val := $v.env }}
            - name: {{ $k }}
              value: {{ $val | quote }}
            {{- end }}
          {{- $check := dict }}
          {{- if hasKey $probe "grpc" }}
          {{- $check = dict "grpc" (dict "port" $probe.grpc "service" "") }}
          {{- else if hasKey $probe "http" }}
          {{- $check = dict "httpGet" (dict "port" $probe.http "path" $probe.path) }}
          {{- else }}
          {{- $check = dict "tcpSocket" (dict "port" $probe.tcp) }}
          {{- end }}
          startupProbe:
            {{- toYaml $check | nindent 12 }}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            {{- toYaml $check | nindent 12 }}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            {{- toYaml $check | nindent 12 }}
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          lifecycle:
            preStop:
              # Endpoints drop the pod while it still serves; then SIGTERM starts the server's drain.
              sleep:
                seconds: {{ $v.preStopSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "petplatform.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 1Gi
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "petplatform.labels" $sel | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "petplatform.selectorLabels" $sel | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      {{- if hasPrefix "grpc" .name }}
      appProtocol: kubernetes.io/h2c
      {{- end }}
    {{- end }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "petplatform.labels" $sel | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "petplatform.labels" $sel | nindent 4 }}
spec:
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "petplatform.selectorLabels" $sel | nindent 6 }}
{{- end -}}
