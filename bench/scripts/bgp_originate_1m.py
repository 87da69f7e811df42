#!/usr/bin/env python3
"""Originate N host routes to a BIRD 2 receiver on loopback from three speakers, in one run:
ShadowNet (`shadownet bgp announce`), BIRD itself (`protocol static`) and gobgpd (routes loaded with
`gobgp mrt inject global`). Reports, per speaker, the seconds from process start and from
Established until the receiver holds 99% and 100% of the routes, and the speaker's peak RSS.
Each speaker runs --runs times; medians are reported. Only loopback addresses are used."""
import argparse, json, os, signal, socket, statistics, struct, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECEIVER, OURS, BIRD_SRC, GOBGP_SRC = "127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.4"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def which(name):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/bin"]:
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    sys.exit(f"{name} not installed (apt-get install bird2 gobgpd)")


def peak_rss_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


class Receiver:
    def __init__(self, work, port, src_addr, src_as):
        self.dir = tempfile.mkdtemp(dir=work)
        self.ctl = os.path.join(self.dir, "ctl")
        conf = os.path.join(self.dir, "bird.conf")
        open(conf, "w").write(f"""router id {RECEIVER};
protocol device {{}}
protocol bgp origin_peer {{ local {RECEIVER} port {port} as 65002; neighbor {src_addr} as {src_as};
  multihop; strict bind on; passive on; hold time 240; ipv4 {{ import all; export none; }}; }}
""")
        self.proc = subprocess.Popen([which("bird"), "-f", "-c", conf, "-s", self.ctl, "-P", os.path.join(self.dir, "pid")])
        while not os.path.exists(self.ctl):
            time.sleep(0.02)

    def birdc(self, *cmd):
        return subprocess.run([which("birdc"), "-s", self.ctl, *cmd], capture_output=True, text=True, timeout=30).stdout

    def count(self):
        for line in self.birdc("show", "route", "count").splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[1] == "of" and parts[3] == "routes":
                return int(parts[0])
        return 0

    def established(self):
        return "Established" in self.birdc("show", "protocols", "origin_peer")

    def stop(self):
        self.proc.kill(); self.proc.wait()


def measure(receiver, speaker_proc, started, n, timeout):
    t_est = t99 = t100 = None
    deadline = started + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        if t_est is None and receiver.established():
            t_est = now
        if t_est is not None:
            c = receiver.count()
            if t99 is None and c >= n * 0.99:
                t99 = now
            if c >= n:
                t100 = now
                break
        if speaker_proc.poll() is not None:
            break
        time.sleep(0.05)
    rss = peak_rss_mib(speaker_proc.pid)
    def rel(t, base):
        return None if t is None or base is None else round(t - base, 3)
    return {"established_s": rel(t_est, started), "start_to_99_s": rel(t99, started), "start_to_100_s": rel(t100, started),
            "established_to_99_s": rel(t99, t_est), "established_to_100_s": rel(t100, t_est), "peak_rss_mib": round(rss, 1)}


def run_shadownet(work, n, timeout):
    port = free_port(); rx = Receiver(work, port, OURS, 65003)
    dll = os.path.join(ROOT, "src/ShadowNet.Cli/bin/Release/net10.0/shadownet.dll")
    started = time.monotonic()
    p = subprocess.Popen(["dotnet", dll, "bgp", "announce", "--peer", RECEIVER, "--peer-port", str(port), "--peer-as", "65002",
                          "--local-as", "65003", "--router-id", OURS, "--local-address", OURS, "--next-hop", "192.0.2.10",
                          "--connect-retry", "1", "--generate", "10.0.0.0", "--generate-count", str(n), "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return measure(rx, p, started, n, timeout)
    finally:
        p.send_signal(signal.SIGTERM); p.wait(10); rx.stop()


def run_bird(work, n, timeout):
    port = free_port(); rx = Receiver(work, port, BIRD_SRC, 65005)
    d = tempfile.mkdtemp(dir=work)
    conf = os.path.join(d, "bird.conf")
    with open(conf, "w") as f:
        f.write(f"router id {BIRD_SRC};\nprotocol device {{}}\nprotocol static st {{ ipv4;\n")
        for i in range(n):
            a = 0x0A000000 + i
            f.write(f"route {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/32 blackhole;\n")
        f.write(f"}}\nprotocol bgp to_receiver {{ local {BIRD_SRC} as 65005; neighbor {RECEIVER} port {port} as 65002; multihop; "
                f"connect delay time 1; connect retry time 1; ipv4 {{ import none; export all; next hop address 192.0.2.10; }}; }}\n")
    started = time.monotonic()
    p = subprocess.Popen([which("bird"), "-f", "-c", conf, "-s", os.path.join(d, "ctl"), "-P", os.path.join(d, "pid")])
    try:
        return measure(rx, p, started, n, timeout)
    finally:
        p.kill(); p.wait(); rx.stop()


def write_mrt(path, n):
    """A TABLE_DUMP_V2 file (RFC 6396) with n /32 routes, next hop 192.0.2.10, for gobgp mrt inject."""
    with open(path, "wb") as f:
        peer = struct.pack("!IHH", 0x7F000004, 0, 1) + struct.pack("!BI4sI", 0x02, 0x7F000004, socket.inet_aton(GOBGP_SRC), 65004)
        f.write(struct.pack("!IHHI", 0, 13, 1, len(peer)) + peer)
        attrs = bytes([0x40, 1, 1, 0]) + bytes([0x40, 2, 0]) + bytes([0x40, 3, 4]) + socket.inet_aton("192.0.2.10")
        for i in range(n):
            body = struct.pack("!IB", i, 32) + struct.pack("!I", 0x0A000000 + i) + struct.pack("!HHIH", 1, 0, 0, len(attrs)) + attrs
            f.write(struct.pack("!IHHI", 0, 13, 2, len(body)) + body)


def run_gobgp(work, n, timeout):
    port = free_port(); rx = Receiver(work, port, GOBGP_SRC, 65004)
    d = tempfile.mkdtemp(dir=work); api = free_port()
    mrt = os.path.join(work, "routes.mrt")
    if not os.path.exists(mrt):
        write_mrt(mrt, n)
    conf = os.path.join(d, "gobgpd.toml")
    open(conf, "w").write(f"""[global.config]
  as = 65004
  router-id = "{GOBGP_SRC}"
  port = -1
  local-address-list = ["{GOBGP_SRC}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{RECEIVER}"
    peer-as = 65002
  [neighbors.transport.config]
    local-address = "{GOBGP_SRC}"
    remote-port = {port}
  [neighbors.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 5
""")
    started = time.monotonic()
    p = subprocess.Popen([which("gobgpd"), "-f", conf, "--api-hosts", f"127.0.0.1:{api}", "--pprof-disable"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while subprocess.run([which("gobgp"), "-u", "127.0.0.1", "-p", str(api), "global"], capture_output=True).returncode != 0:
            time.sleep(0.05)
        subprocess.Popen([which("gobgp"), "-u", "127.0.0.1", "-p", str(api), "mrt", "inject", "global", mrt],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return measure(rx, p, started, n, timeout)
    finally:
        p.kill(); p.wait(); rx.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--speakers", default="shadownet,bird,gobgp")
    args = ap.parse_args()
    runners = {"shadownet": run_shadownet, "bird": run_bird, "gobgp": run_gobgp}
    results = {}
    with tempfile.TemporaryDirectory(prefix="shadownet-bench-") as work:
        for i in range(args.runs):
            for name in args.speakers.split(","):
                r = runners[name](work, args.routes, args.timeout)
                print(json.dumps({"speaker": name, "run": i + 1, **r}), flush=True)
                results.setdefault(name, []).append(r)
    print("\nmedians over", args.runs, "runs,", args.routes, "routes:")
    keys = ["established_s", "established_to_99_s", "established_to_100_s", "start_to_99_s", "start_to_100_s", "peak_rss_mib"]
    print("| speaker | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, rs in results.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in rs if r[k] is not None]
            cells.append(f"{statistics.median(vals):.3f}" if len(vals) == len(rs) else f"incomplete ({len(vals)}/{len(rs)})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
