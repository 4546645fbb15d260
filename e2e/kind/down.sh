#!/usr/bin/env bash
# Remove what e2e/kind/up.sh made: the kind cluster (with everything in it) and its local
# state (keys, the simulated TEE root). The image store is left alone.
set -euo pipefail
CLUSTER=${TEEROUTE_KIND_CLUSTER:-teeroute}
kind delete cluster --name "$CLUSTER"
rm -rf "${TEEROUTE_KIND_STATE:-$HOME/.cache/teeroute/kind/$CLUSTER}"
