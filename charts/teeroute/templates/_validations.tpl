{{/*
Values the schema cannot check on its own: what is required, and what only works together.
Each failure says what to set. Included by the operator's Deployment, so every render runs it.
*/}}
{{- define "teeroute.validate" -}}
{{- $v := .Values -}}
{{- if not $v.operator.releaseKey.existingSecret -}}
{{- fail "operator.releaseKey.existingSecret is required: create the release key's Secret first (`teeroute operator release-key --out key.pem`; `kubectl create secret generic teeroute-release-key --from-file=release-key.pem=key.pem`) and name it here. The chart never generates keys." -}}
{{- end -}}
{{- if and $v.gateway.enabled (not $v.gateway.operatorKey) -}}
{{- fail "gateway.operatorKey is required: the public half of the operator's release key (`teeroute operator release-key --show key.pem` prints it). The gateway routes only to endpoints it signed." -}}
{{- end -}}
{{- if and $v.simulatedTee.enabled (not $v.simulatedTee.rootPem) -}}
{{- fail "simulatedTee.enabled needs simulatedTee.rootPem: the simulated TEE's root certificate (`--set-file simulatedTee.rootPem=root.pem`)." -}}
{{- end -}}
{{- if and $v.gateway.enabled $v.gateway.keys.signingKey.existingSecret (not $v.operator.gatewayKeys) -}}
{{- fail "gateway.keys.signingKey is set but operator.gatewayKeys is empty: agents would refuse every request the gateway signs. Put the key's public half (`teeroute gateway gateway-key --show FILE`) in operator.gatewayKeys." -}}
{{- end -}}
{{- if eq $v.gateway.ledger.type "sqlite" -}}
{{- if or (gt (int $v.gateway.replicas) 1) $v.gateway.autoscaling.enabled -}}
{{- fail "gateway.ledger.type sqlite serves one gateway replica: set gateway.replicas 1 and gateway.autoscaling.enabled false, or use ledger type postgresql." -}}
{{- end -}}
{{- else if not $v.gateway.ledger.postgresql.existingSecret -}}
{{- fail "gateway.ledger.type postgresql needs gateway.ledger.postgresql.existingSecret: a Secret holding the DSN (postgresql://USER:PASSWORD@HOST:PORT/DB)." -}}
{{- end -}}
{{- if and $v.gateway.redis.enabled (not $v.gateway.redis.url.existingSecret) -}}
{{- fail "gateway.redis.enabled needs gateway.redis.url.existingSecret: a Secret holding the Redis URL." -}}
{{- end -}}
{{- if and $v.gateway.autoscaling.enabled (lt (int $v.gateway.autoscaling.maxReplicas) (int $v.gateway.autoscaling.minReplicas)) -}}
{{- fail "gateway.autoscaling.maxReplicas must be at least minReplicas." -}}
{{- end -}}
{{- if and $v.serviceMonitor.enabled (or $v.operator.metrics.token.existingSecret $v.gateway.keys.metricsTokenSha256) (not $v.serviceMonitor.bearerToken.existingSecret) -}}
{{- fail "metrics need a token (operator.metrics.token or gateway.keys.metricsTokenSha256): set serviceMonitor.bearerToken.existingSecret so Prometheus can scrape." -}}
{{- end -}}
{{- end -}}
