#!/usr/bin/env bash
# The floor under bench/hooks-to-bird.sh's create -> route-in-BIRD latency on this machine: the same
# open loop and the same BIRD (100,000 static routes, re-exporting to a probe), with shadownetd replaced
# by a relay that only turns datagrams into UPDATEs (bench/scripts/bgp_floor.c). With `shadownetd` the
# same C sender and probe drive the real daemon instead (store sync=full, a warm pool of 1,000, as in
# the bench); `both` alternates the two, run by run. Needs gcc, libssl-dev and bird2.
# Usage: bench/bgp-floor.sh [rate events/s] [seconds] [runs] [relay|shadownetd|both]   (10000 5 3 relay)
# BENCH_SYNC=normal runs the daemon without an fsync per commit; its lease tables are sized for the
# whole pool (store:expectedLeases 262144, as the operator guide advises), BENCH_EXPECTED_LEASES=0 for
# the default sizing. shadownetd's pool, a /14 whose
# addresses are not reused within an hour, holds about eight runs of 10,000 events/s for 5 s. After
# each shadownetd run: its garbage collections during the run and their pause (its metrics, with curl).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/bird ] || { echo "needs bird2 (scripts/test installs it)"; exit 2; }
[ -f /usr/include/openssl/hmac.h ] || { echo "needs libssl-dev (apt-get install libssl-dev)"; exit 2; }
speakers=${4:-relay}
case "$speakers" in relay|shadownetd|both) ;; *) echo "speakers: relay, shadownetd or both"; exit 2 ;; esac
folder=$(mktemp -d /tmp/shadownet-bgp-floor-XXXXXX)
daemon_pid=
stop_daemon() { [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null; daemon_pid=; }
trap 'stop_daemon; kill "$(cat "$folder/bird.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$folder"' EXIT
gcc -O2 -Wall -o "$folder/bgp_floor" bench/scripts/bgp_floor.c -lcrypto
# SHADOWNETD_DLL runs another build of the daemon (a worktree's, to compare two side by side).
daemon_dll=${SHADOWNETD_DLL:-src/ShadowNet.Daemon/bin/Release/net10.0/shadownetd.dll}
[ "$speakers" = relay ] || [ -n "${SHADOWNETD_DLL:-}" ] || dotnet build -c Release src/ShadowNet.Daemon -v q -nologo >/dev/null
bird_port=31731 probe_port=31732 udp_port=31733 hook_port=31734 metrics_port=31735
key=62656e63682d6b65792d6f6e6c792d6c6f6f706261636b # the bench's
cat > "$folder/shadownetd.json" <<CONF
{
  "store": { "path": "$folder/state.db", "sync": "${BENCH_SYNC:-full}", "expectedLeases": ${BENCH_EXPECTED_LEASES:-262144} },
  "bgp": { "localAs": 65003, "routerId": "127.0.0.3", "gracefulRestart": 0,
    "peers": [ { "address": "127.0.0.2", "port": $bird_port, "remoteAs": 65002, "localAddress": "127.0.0.3", "families": [ "ipv4" ] } ] },
  "pools": [ { "name": "bench", "kind": "shadow", "prefixes": [ "10.64.0.0/14" ], "application": "bench", "reuseDelay": "01:00:00" } ],
  "warm": [ { "application": "bench", "count": 1000 } ],
  "routes": { "defaultNextHopV4": "192.0.2.1" },
  "hooks": { "udp": { "listen": "127.0.0.1:$hook_port", "keys": { "1": "$key" } } },
  "metrics": { "listen": "127.0.0.1:$metrics_port" }
}
CONF
{
  echo "router id 127.0.0.2;"
  echo "protocol device {}"
  echo "protocol static preload {"
  echo "  ipv4;"
  seq 0 99999 | awk '{ printf "  route 172.%d.%d.%d/32 blackhole;\n", $1 < 65536 ? 16 : 17, int($1 / 256) % 256, $1 % 256 }'
  echo "}"
  cat <<CONF
template bgp common {
  local 127.0.0.2 port $bird_port as 65002;
  multihop; strict bind on; hold time 90;
  connect delay time 1; connect retry time 1;
}
protocol bgp sn from common { neighbor 127.0.0.3 as 65003; passive on; ipv4 { import all; export none; }; }
protocol bgp relay from common { neighbor 127.0.0.7 as 65003; passive on; ipv4 { import all; export none; }; }
protocol bgp probe from common {
  neighbor 127.0.0.5 port $probe_port as 65005;
  ipv4 { import none; export filter { if proto = "sn" || proto = "relay" then accept; reject; }; };
}
CONF
} > "$folder/bird.conf"
/usr/sbin/bird -c "$folder/bird.conf" -s "$folder/bird.ctl" -P "$folder/bird.pid"
for _ in $(seq 1 100); do
  /usr/sbin/birdc -s "$folder/bird.ctl" show route count 2>/dev/null | grep -q '100000 of 100000' && break
  sleep 0.2
done
established() { /usr/sbin/birdc -s "$folder/bird.ctl" show protocols sn | grep -q Established; }
# The daemon's garbage collections so far and their pauses in seconds, from its metrics.
gc_figures() {
  curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^dotnet_gc_collections_total/ { n += $2 } /^dotnet_gc_pause_time_seconds_total/ { p += $2 } END { print n + 0, p + 0 }'
}
udp_receive_drops() { awk '/^Udp: [0-9]/ { print $6 }' /proc/net/snmp; }
# One run of the C tool: with a key and a run number it drives shadownetd, without them the relay.
rate=${1:-10000} seconds=${2:-5}
run_floor() { timeout 120 "$folder/bgp_floor" "$rate" "$seconds" "$bird_port" "$probe_port" "$@"; }
if [ "$speakers" != relay ]; then
  # One daemon for all runs, peered with BIRD and warmed up by one unmeasured run (its methods compiled
  # and re-compiled, as the bench's warm-up loop does) before the first measured one.
  dotnet "$daemon_dll" --config "$folder/shadownetd.json" \
    --Logging:LogLevel:Default Warning &
  daemon_pid=$!
  for _ in $(seq 1 150); do established && break; sleep 0.2; done
  established || { echo "shadownetd did not peer with BIRD"; exit 1; }
  run_floor "$hook_port" "$key" 0 | sed 's/^/(warm-up) /'
fi
for run in $(seq 1 "${3:-3}"); do
  if [ "$speakers" != shadownetd ]; then
    run_floor "$udp_port"
  fi
  if [ "$speakers" != relay ]; then
    before=$(gc_figures)
    drops=$(udp_receive_drops)
    if ! run_floor "$hook_port" "$key" "$run"; then
      # Creates missing after 10 s: say whether the daemon is alive, whether datagrams were dropped for a
      # full receive buffer (machine-wide), and what its slowest commits took.
      kill -0 "$daemon_pid" 2>/dev/null && echo "  shadownetd is running" || echo "  shadownetd has exited"
      echo "  UDP datagrams dropped for a full receive buffer during the run: $(( $(udp_receive_drops) - drops ))"
      curl -s --max-time 5 "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shadownet_store_(commit|maintenance)_duration_seconds_(bucket|count)' \
        | awk '{ printf "  %s\n", $0 }' || true
      exit 1
    fi
    # A collection pauses every thread of the daemon: say which runs had one.
    echo "$before $(gc_figures)" | awk '{ printf "  shadownetd garbage collections during the run: %d, paused %.1f ms\n", $3 - $1, ($4 - $2) * 1000 }'
  fi
done
