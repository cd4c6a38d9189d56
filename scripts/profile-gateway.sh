#!/usr/bin/env bash
# Profile the gateway under the benchmark's load: one sweep level of paced streams through
# `sluice serve`, sampled by py-spy, then the top functions by own and inclusive time.
#
#   scripts/profile-gateway.sh [CONCURRENCY] [SECONDS] [OUT_DIR]
#
# Installs py-spy into the virtual environment when it is missing (a profiling tool, not a
# dependency of the project). Needs ptrace rights over the child process (root, or
# kernel.yama.ptrace_scope = 0).
set -euo pipefail

LEVEL=${1:-100}
SECONDS_=${2:-20}
OUT=${3:-var/bench/profile}
PY=${PYTHON:-.venv/bin/python}
SPY="$(dirname "$PY")/py-spy"

mkdir -p "$OUT"
if [ ! -x "$SPY" ]; then
    "$PY" -m pip install --quiet py-spy
fi

"$PY" -m sluice.bench --targets gateway --sweep "$LEVEL" --step-seconds "$((SECONDS_ + 8))" \
    --ttft-streams 10 --gap-streams 1 --idle-streams 0 --slow-seconds 0 --out "$OUT" \
    >"$OUT/bench.out" 2>"$OUT/bench.err" &
bench=$!

gateway=""
for _ in $(seq 1 100); do
    gateway=$(pgrep -P "$bench" -f "sluice.cli serve" || true)
    [ -n "$gateway" ] && break
    sleep 0.2
done
if [ -z "$gateway" ]; then
    echo "profile-gateway: the gateway did not start; see $OUT/bench.err" >&2
    wait "$bench" || true
    exit 1
fi

# Sample the gateway's sweep level only: wait until the runner says it has begun (the
# direct target's level comes first), then give the level a second to ramp up.
for _ in $(seq 1 600); do
    grep -qE "^ +gateway +sweep c=" "$OUT/bench.err" 2>/dev/null && break
    sleep 0.2
done
sleep 1
# SPY_ARGS=--native adds the C frames (uvloop, the kernel calls); py-spy must then pause the
# process for each sample, which slows it down.
nonblocking=--nonblocking
case "${SPY_ARGS:-}" in *--native*) nonblocking="" ;; esac
"$SPY" record --pid "$gateway" --duration "$SECONDS_" --rate 200 $nonblocking ${SPY_ARGS:-} \
    --format raw --output "$OUT/gateway.folded" >"$OUT/py-spy.log" 2>&1
wait "$bench" || true

"$PY" "$(dirname "$0")/fold_summary.py" "$OUT/gateway.folded" | tee "$OUT/summary.txt"
grep -E "^gateway +sweep" "$OUT/bench.err" || true
