#!/usr/bin/env bash
# The floor under bench/hooks-to-bird.sh's create -> route-in-BIRD latency on this machine: the same
# open loop and the same BIRD (100,000 static routes, re-exporting to a probe), with shadownetd replaced
# by a relay that only turns datagrams into UPDATEs (bench/scripts/bgp_floor.c). Needs gcc and bird2.
# Usage: bench/bgp-floor.sh [rate events/s] [seconds] [runs]     (defaults: 10000 5 3)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/bird ] || { echo "needs bird2 (scripts/test installs it)"; exit 2; }
folder=$(mktemp -d /tmp/shadownet-bgp-floor-XXXXXX)
trap 'kill "$(cat "$folder/bird.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$folder"' EXIT
gcc -O2 -Wall -o "$folder/bgp_floor" bench/scripts/bgp_floor.c
bird_port=31731 probe_port=31732 udp_port=31733
{
  echo "router id 127.0.0.2;"
  echo "protocol device {}"
  echo "protocol static preload {"
  echo "  ipv4;"
  for i in $(seq 0 99999); do
    [ "$i" -lt 65536 ] && net=172.16 || net=172.17
    echo "  route $net.$(( i >> 8 & 255 )).$(( i & 255 ))/32 blackhole;"
  done
  echo "}"
  cat <<CONF
template bgp common {
  local 127.0.0.2 port $bird_port as 65002;
  multihop; strict bind on; hold time 90;
  connect delay time 1; connect retry time 1;
}
protocol bgp sn from common { neighbor 127.0.0.3 as 65003; passive on; ipv4 { import all; export none; }; }
protocol bgp probe from common {
  neighbor 127.0.0.5 port $probe_port as 65005;
  ipv4 { import none; export filter { if proto = "sn" then accept; reject; }; };
}
CONF
} > "$folder/bird.conf"
/usr/sbin/bird -c "$folder/bird.conf" -s "$folder/bird.ctl" -P "$folder/bird.pid"
for _ in $(seq 1 100); do
  /usr/sbin/birdc -s "$folder/bird.ctl" show route count 2>/dev/null | grep -q '100000 of 100000' && break
  sleep 0.2
done
for run in $(seq 1 "${3:-3}"); do
  timeout 120 "$folder/bgp_floor" "${1:-10000}" "${2:-5}" "$bird_port" "$probe_port" "$udp_port"
done
