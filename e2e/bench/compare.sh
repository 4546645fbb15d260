#!/usr/bin/env bash
# The gateway benchmark at an earlier commit and at the working tree, alternated ROUNDS times on
# this machine, so a change's cost is read side by side rather than against old result files:
#
#     e2e/bench/compare.sh BASE [ROUNDS] [OUT]      (defaults: 2 rounds, /tmp/teeroute-compare)
#
# BASE is checked out in a git worktree; its code runs from the workspace's virtualenv with
# PYTHONPATH set to its sources (the gateway benchmark and engine simulator must be the same
# at both ends for the numbers to compare). Each run is `gateway.py --quick --only gateway`.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:?usage: e2e/bench/compare.sh BASE [ROUNDS] [OUT]}
rounds=${2:-2}
out=${3:-/tmp/teeroute-compare}
tree="$out/base-tree"
python=$PWD/.venv/bin/python
mkdir -p "$out"
[ -d "$tree" ] || git worktree add --detach "$tree" "$base" >/dev/null
sources=(sdk/src gateway/src operator/src enclave-images/agent/src enclave-images/engine-sim/src e2e/sandbox/src)
pythonpath=$(printf "$tree/%s:" "${sources[@]}")
for round in $(seq 1 "$rounds"); do
  echo "round $round: $base" >&2
  (cd "$tree" && PYTHONPATH="$pythonpath" "$python" e2e/bench/gateway.py --quick --only gateway \
    --out "$out/base-$round" >"$out/base-$round.log" 2>&1)
  echo "round $round: working tree" >&2
  "$python" e2e/bench/gateway.py --quick --only gateway --out "$out/head-$round" \
    >"$out/head-$round.log" 2>&1
done
for run in "$out"/base-[0-9]* "$out"/head-[0-9]*; do
  [ -d "$run" ] || continue
  printf '%s: ' "$(basename "$run")"
  grep -E 'max req/s|requests per CPU-second|\*\*streamed tokens/s|moderate load: p50' \
    "$run/gateway.md" | awk -F'|' '{gsub(/ +$/, "", $2); gsub(/ /, "", $4); printf "%s=%s; ", $2, $4}'
  echo
done
git worktree remove --force "$tree"
