#!/usr/bin/env bash
# The open loop of bench/hooks-to-bird.sh with a capture of the loopback around it, then the latencies
# read from the kernel's packet timestamps (bench/scripts/wire_latency.py): what each hop adds without
# any process's own wake-up in it, the probe's included. Needs tcpdump (apt-get install tcpdump) and root.
# Usage: bench/wire-latency.sh [rate events/s] [seconds] [runs]     (defaults: 10000 5 3)
# WIRE_SLOWEST=N also lists when each line's N slowest routes were created (stalls on a period or not).
# In its output: 127.0.0.3 is shadownetd, 127.0.0.2 BIRD, 127.0.0.5 the probe behind BIRD, 127.0.0.6 the
# probe peering with shadownetd directly; the first run is the runner's one-second warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tcpdump >/dev/null || { echo "needs tcpdump (apt-get install tcpdump)"; exit 2; }
capture=$(mktemp /tmp/shadownet-wire-XXXXXX.pcap)
tcpdump -i lo -s 0 -B 262144 --time-stamp-precision=nano -w "$capture" 'udp or tcp' & # prints, when stopped, how many packets the kernel dropped (they must be 0)
dumper=$!
trap 'kill $dumper 2>/dev/null || true; rm -f "$capture"' EXIT
sleep 1
BENCH_ONLY=open BENCH_WIRE_PROBE=1 bench/hooks-to-bird.sh "${1:-10000}" "${2:-5}" "${3:-3}"
sleep 1
kill -INT $dumper
wait $dumper || true
python3 bench/scripts/wire_latency.py ${WIRE_SLOWEST:+--slowest "$WIRE_SLOWEST"} "$capture"
