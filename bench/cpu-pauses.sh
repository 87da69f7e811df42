#!/usr/bin/env bash
# The machine's own pauses: how often, and how long, each CPU stops running a real-time thread that
# wants it (bench/scripts/cpu_pauses.c). Run it beside latency figures: a p99 shorter than the pauses
# that hit 1% of a pipeline's steps cannot be had on the machine. Needs gcc; root for real-time priority.
# Usage: bench/cpu-pauses.sh [seconds] [threshold ms]     (defaults: 10 1)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(mktemp /tmp/shadownet-cpu-pauses-XXXXXX)
trap 'rm -f "$binary"' EXIT
gcc -O2 -pthread -o "$binary" bench/scripts/cpu_pauses.c
"$binary" "${1:-10}" "${2:-1}"
