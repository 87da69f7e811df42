#!/usr/bin/env bash
# How much latency tail this machine adds by itself: datagrams relayed by two processes that do nothing
# else (bench/scripts/relay_floor.c), to read beside bench/hooks-to-bird.sh's create -> route-in-BIRD
# figures (two relays there too: shadownetd and BIRD). Needs gcc.
# Usage: bench/relay-floor.sh [rate per s] [seconds] [relays]     (defaults: 10000 5 2)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(mktemp /tmp/shadownet-relay-floor-XXXXXX)
trap 'rm -f "$binary"' EXIT
gcc -O2 -o "$binary" bench/scripts/relay_floor.c
"$binary" "${1:-10000}" "${2:-5}" "${3:-2}"
