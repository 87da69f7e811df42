#!/usr/bin/env bash
# End-to-end: UDP create/delete into shadownetd, routes to a BIRD 2 holding 100,000 routes, beside
# gobgpd's AddPath and AddPathStream into the same BIRD, in one run (see EndToEnd/HooksToBird.cs).
# Usage: bench/hooks-to-bird.sh [rate events/s] [seconds] [runs]     (defaults: 10000 5 3)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gobgpd >/dev/null && [ -x /usr/sbin/bird ] || { echo "needs bird2 and gobgpd (scripts/test installs them)"; exit 2; }
dotnet build -c Release src/ShadowNet.Daemon -v q -nologo
dotnet build -c Release bench/ShadowNet.Benchmarks -v q -nologo
cd bench/ShadowNet.Benchmarks
# The runner (load generator and probes) compiled fully at once, so its own warm-up is in neither
# speaker's figures; the daemon compiles as its runtimeconfig says.
SHADOWNETD_DLL=../../src/ShadowNet.Daemon/bin/Release/net10.0/shadownetd.dll DOTNET_TieredCompilation=0 \
  dotnet bin/Release/net10.0/ShadowNet.Benchmarks.dll hooks-to-bird "${1:-10000}" "${2:-5}" "${3:-3}"
