#!/usr/bin/env bash
# teeroute on kind, for Docker users: create the cluster, load the images from the OCI store,
# `helm install` the chart with the SAME values file CI tests (charts/teeroute/values-kind.yaml),
# apply the example MinerPool and Route, wait until the miners are attested, then run the demo
# client (plain and sealed through `teeroute proxy`). Remove it all: e2e/kind/down.sh.
# Needs: docker, kind, kubectl, helm, skopeo, curl, and images built with `teeroute images build`.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${TEEROUTE_KIND_CLUSTER:-teeroute}
RELEASE_NS=teeroute-system
MINERS_NS=miners
STORE=${TEEROUTE_IMAGE_STORE:-$HOME/.cache/teeroute/images/oci}
STATE=${TEEROUTE_KIND_STATE:-$HOME/.cache/teeroute/kind/$CLUSTER}
VALUES=charts/teeroute/values-kind.yaml
MODEL=llama-3.1-8b
GATEWAY_PORT=${TEEROUTE_KIND_GATEWAY_PORT:-8080}
PROXY_PORT=${TEEROUTE_KIND_PROXY_PORT:-8787}
teeroute() { python3 -m uv run --frozen teeroute "$@"; }
py() { python3 -m uv run --frozen python "$@"; }
k() { kubectl --context "kind-$CLUSTER" "$@"; }
step() { printf '\n== %s\n' "$*" >&2; }

for tool in docker kind kubectl helm skopeo curl; do
  command -v "$tool" >/dev/null || { echo "e2e/kind/up.sh: $tool is not installed" >&2; exit 1; }
done
[ -f "$STORE/index.json" ] || { echo "no image store at $STORE: run teeroute images build" >&2; exit 1; }
mkdir -p "$STATE" && chmod 700 "$STATE"

step "kind cluster $CLUSTER (a worker labelled as the simulated-TEE pool)"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config e2e/kind/cluster.yaml

step "images from $STORE"
for ref in $(py e2e/kind/plan.py images); do
  archive="$STATE/$(echo "$ref" | tr '/:' '__').tar"
  skopeo copy --quiet "oci:$STORE:$ref" "docker-archive:$archive:$ref"
  kind load image-archive "$archive" --name "$CLUSTER"
  rm -f "$archive"
done

step "keys: the operator's release key, the gateway's key, a demo API key (kept in $STATE)"
k create namespace "$RELEASE_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k create namespace "$MINERS_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
[ -f "$STATE/release-key.pem" ] || teeroute operator release-key --out "$STATE/release-key.pem" >/dev/null
[ -f "$STATE/gateway-key.pem" ] || teeroute gateway gateway-key --out "$STATE/gateway-key.pem" >/dev/null
[ -f "$STATE/api-key" ] || (umask 077; py -c 'import secrets; print("tr-" + secrets.token_urlsafe(32))' >"$STATE/api-key")
api_key=$(cat "$STATE/api-key")
operator_pub=$(teeroute operator release-key --show "$STATE/release-key.pem" | sed -n "s/^TEEROUTE_GATEWAY_OPERATOR_KEY=//p")
gateway_pub=$(teeroute gateway gateway-key --show "$STATE/gateway-key.pem" | sed -n "s/^TEEROUTE_OPERATOR_GATEWAY_KEYS=//p")
k -n "$RELEASE_NS" create secret generic teeroute-release-key \
  --from-file=release-key.pem="$STATE/release-key.pem" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$RELEASE_NS" create secret generic teeroute-gateway-key \
  --from-file=gateway-key.pem="$STATE/gateway-key.pem" --dry-run=client -o yaml | k apply -f - >/dev/null
printf 'keys:\n  - name: kind-demo\n    sha256: %s\n    credit: "10"\n' \
  "$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)" >"$STATE/api-keys.yaml"
k -n "$RELEASE_NS" create secret generic teeroute-api-keys \
  --from-file=api-keys.yaml="$STATE/api-keys.yaml" --dry-run=client -o yaml | k apply -f - >/dev/null

step "the simulated TEE: a chip per simulated-TEE node for the miners, its root for the operator"
nodes=$(k get nodes -l teeroute.dev/simulated-tee=true -o jsonpath='{.items[*].metadata.name}')
# shellcheck disable=SC2086 # one argument per node name
py e2e/kind/plan.py simulated-tee "$MINERS_NS" "$STATE/simulated-tee" $nodes | k apply -f - >/dev/null

step "helm install with $VALUES"
helm upgrade --install teeroute charts/teeroute --kube-context "kind-$CLUSTER" \
  --namespace "$RELEASE_NS" -f "$VALUES" \
  --set gateway.operatorKey="$operator_pub" \
  --set "operator.gatewayKeys[0]=$gateway_pub" \
  --set gateway.keys.apiKeys.existingSecret=teeroute-api-keys \
  --set-file simulatedTee.rootPem="$STATE/simulated-tee/root.crt" \
  --wait --timeout 5m

step "example MinerPool and Route; waiting until the miners are attested"
for example in $(py e2e/kind/plan.py examples); do
  k -n "$MINERS_NS" apply -f "$example"
done
replicas=$(k -n "$MINERS_NS" get minerpool llama-sim -o jsonpath='{.spec.replicas}')
k -n "$MINERS_NS" wait --for=jsonpath='{.status.attestedReplicas}'="$replicas" minerpool/llama-sim --timeout=300s

step "the demo client: a plain request and a sealed one through teeroute proxy"
k -n "$RELEASE_NS" port-forward svc/teeroute-gateway "$GATEWAY_PORT:80" >"$STATE/port-forward.log" 2>&1 &
forward=$!
printf '{"allowedTee": ["simulated"], "trust": {"simulatedRoot": "%s"}}\n' \
  "$STATE/simulated-tee/root.crt" >"$STATE/policy.json"
TEEROUTE_API_KEY=$api_key python3 -m uv run --frozen teeroute proxy \
  --gateway "http://127.0.0.1:$GATEWAY_PORT/v1" --policy "$STATE/policy.json" \
  --port "$PROXY_PORT" --api-key-env TEEROUTE_API_KEY >"$STATE/proxy.log" 2>&1 &
proxy=$!
trap 'kill "$proxy" "$forward" 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  curl -fs "http://127.0.0.1:$PROXY_PORT/healthz" >/dev/null && \
    curl -fs "http://127.0.0.1:$GATEWAY_PORT/healthz" >/dev/null && break
  sleep 1
done
py e2e/demo/client.py --base-url "http://127.0.0.1:$GATEWAY_PORT" --api-key "$api_key" \
  --sealed-proxy "http://127.0.0.1:$PROXY_PORT" --model "$MODEL"
k -n "$MINERS_NS" get minerpools,routes
