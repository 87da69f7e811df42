#!/usr/bin/env bash
# End-to-end bench (not a test): 1,000,000 /32 routes to a BIRD 2 receiver on loopback from
# ShadowNet, BIRD and gobgpd, in one run; medians of --runs. Needs bird2 and gobgpd installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/ShadowNet.Cli >/dev/null
exec python3 bench/scripts/bgp_originate_1m.py "$@"
