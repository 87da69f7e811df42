"""Create -> route latencies read from a packet capture of the loopback (kernel timestamps), so that no
process's own scheduling is in them: from each hook create datagram to the first BGP UPDATE on each TCP
stream that carries its /32 (the address comes from the daemon's reply to that create).

Usage: python3 bench/scripts/wire_latency.py CAPTURE.pcap
(bench/wire-latency.sh takes the capture around an open-loop run of bench/hooks-to-bird.sh)

Each daemon the bench starts has its own hook port; within one, runs are told apart by a pause of more
than 0.2 s between creates. A route's arrival is its first announcement on a stream within a second
after its create (addresses come back into use); each run and stream that carried most of the run's
routes gets a line. So does each relaying hop (a stream out of the host another stream went into, as
BIRD's UPDATE to the probe after shadownetd's UPDATE to BIRD): the time between the two, per route.
Only IPv4 /32 routes and the capture formats tcpdump writes on Linux' lo (Ethernet framing, micro- or
nanosecond timestamps) are read.
"""
import argparse
import bisect
import collections
import struct

CREATE = 1
REPLY_LENGTH = 48


def packets(path):
    with open(path, "rb") as capture:
        header = capture.read(24)
        magic = struct.unpack("<I", header[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            raise SystemExit(f"{path}: not a little-endian pcap file (tcpdump -w writes one)")
        unit = 1e-9 if magic == 0xA1B23C4D else 1e-6
        link_header = 14 if struct.unpack("<I", header[20:24])[0] == 1 else 16
        while len(record := capture.read(16)) == 16:
            seconds, fraction, length, _ = struct.unpack("<IIII", record)
            data = capture.read(length)
            ip = data[link_header:]
            if len(ip) >= 20 and ip[0] >> 4 == 4:
                ihl = (ip[0] & 15) * 4
                yield seconds + fraction * unit, ip[9], ip[12:16], ip[16:20], ip[ihl:struct.unpack(">H", ip[2:4])[0]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture")
    parser.add_argument("--slowest", type=int, default=0, metavar="N",
                        help="also list, per line, when (s into the run) its N slowest routes were created: to tell stalls that recur on a period from scattered ones")
    args = parser.parse_args()

    runs = []             # per run: sequence -> time the create left (sequences start again each run)
    address_of = []       # per run: sequence -> IPv4 address the reply gave
    current = {}          # hook port (where creates went) -> (its run's index, time of its last create)
    streams = collections.defaultdict(lambda: {"buffer": b"", "next": None})
    arrivals = collections.defaultdict(lambda: collections.defaultdict(list))  # stream -> /32 -> times announced
    for time, protocol, source, destination, l4 in packets(args.capture):
        if protocol == 17:
            source_port, destination_port = struct.unpack(">HH", l4[:4])
            payload = l4[8:]
            if payload[:2] != b"SN" or len(payload) < 16:
                continue
            if payload[3] == CREATE:
                run, last = current.get(destination_port, (None, None))
                if run is None or time - last > 0.2:
                    run = len(runs)
                    runs.append({})
                    address_of.append({})
                current[destination_port] = (run, time)
                runs[run].setdefault(struct.unpack(">Q", payload[4:12])[0], time)
            elif payload[3] & 0x80 and source_port in current:  # replies, from the port the creates went to
                # Replies to one client may leave as one segmented (GSO) datagram: loopback shows it whole.
                for at in range(0, len(payload) - REPLY_LENGTH + 1, REPLY_LENGTH):
                    reply = payload[at:at + REPLY_LENGTH]
                    if reply[3] & 0x7F == CREATE and reply[16:28] == bytes(10) + b"\xff\xff":
                        address_of[current[source_port][0]][struct.unpack(">Q", reply[4:12])[0]] = reply[28:32]
        elif protocol == 6:
            source_port, destination_port, sequence = struct.unpack(">HHI", l4[:8])
            payload = l4[(l4[12] >> 4) * 4:]
            if not payload:
                continue
            key = (source, source_port, destination, destination_port)
            stream = streams[key]
            if stream["next"] is not None and sequence != stream["next"]:
                if (sequence - stream["next"]) % 2**32 > 2**31:
                    continue  # a retransmission of what was read already
                stream["buffer"] = b""  # a gap (the capture dropped a segment): read on from a segment that starts a message
            stream["next"] = (sequence + len(payload)) % 2**32
            data = stream["buffer"] + payload
            while len(data) >= 19:
                length = struct.unpack(">H", data[16:18])[0]
                if data[:16] != b"\xff" * 16 or length < 19:
                    data = b""
                    break
                if len(data) < length:
                    break
                message, data = data[:length], data[length:]
                if message[18] == 2:  # UPDATE: IPv4 NLRI after the withdrawn routes and the attributes
                    withdrawn = struct.unpack(">H", message[19:21])[0]
                    attributes = struct.unpack(">H", message[21 + withdrawn:23 + withdrawn])[0]
                    nlri = message[23 + withdrawn + attributes:]
                    at = 0
                    while at < len(nlri):
                        bits = nlri[at]
                        octets = (bits + 7) // 8
                        if bits == 32:
                            arrivals[key][nlri[at + 1:at + 1 + octets]].append(time)
                        at += 1 + octets
            stream["buffer"] = data

    def arrival(times, after):
        at = bisect.bisect_left(times, after)
        return times[at] if at < len(times) and times[at] - after < 1 else None

    print(f"hook ports {sorted(current)}: {sum(map(len, runs))} creates, {sum(map(len, address_of))} replies with an address, {len(runs)} runs")
    for number, (run, addresses) in enumerate(zip(runs, address_of), 1):
        for (source, source_port, destination, destination_port), announced in arrivals.items():
            timed = [((a - t) * 1000, t) for s, t in run.items()
                     if s in addresses and (a := arrival(announced.get(addresses[s], []), t)) is not None]
            latencies = sorted(latency for latency, _ in timed)
            if len(latencies) < len(run) // 2:
                continue
            n = len(latencies)
            print(f"run {number} ({len(run)} creates) {'.'.join(map(str, source))}:{source_port} -> {'.'.join(map(str, destination))}:{destination_port}: "
                  f"n {n} p50 {latencies[n // 2]:.3f} p90 {latencies[int(0.9 * n)]:.3f} p99 {latencies[int(0.99 * n)]:.3f} max {latencies[-1]:.2f} ms")
            slowest(timed, min(run.values()), args.slowest)
        # A relaying hop on its own (BIRD: from the UPDATE into it to the UPDATE out of it, per route).
        for into, announced_in in arrivals.items():
            for out, announced_out in arrivals.items():
                if out[0] != into[2] or out[2] == into[0]:
                    continue
                timed_hops = []
                for s, t in run.items():
                    if s in addresses and (a := arrival(announced_in.get(addresses[s], []), t)) is not None \
                            and (b := arrival(announced_out.get(addresses[s], []), a)) is not None:
                        timed_hops.append(((b - a) * 1000, t))
                if len(timed_hops) < len(run) // 2:
                    continue
                hops = sorted(hop for hop, _ in timed_hops)
                n = len(hops)
                print(f"run {number} hop {'.'.join(map(str, into[0]))} -> {'.'.join(map(str, into[2]))} -> {'.'.join(map(str, out[2]))}: "
                      f"n {n} p50 {hops[n // 2]:.3f} p90 {hops[int(0.9 * n)]:.3f} p99 {hops[int(0.99 * n)]:.3f} max {hops[-1]:.2f} ms")
                slowest(timed_hops, min(run.values()), args.slowest)


def slowest(timed, start, count):
    """Prints 'seconds into the run: ms' for the count slowest of (latency ms, create time) pairs, in time order."""
    if count > 0:
        worst = sorted(sorted(timed, reverse=True)[:count], key=lambda pair: pair[1])
        print("    slowest: " + " ".join(f"{t - start:.3f}s:{latency:.2f}" for latency, t in worst))


if __name__ == "__main__":
    main()
