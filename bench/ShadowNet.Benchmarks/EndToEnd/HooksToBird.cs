using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using ShadowNet.Addressing;
using ShadowNet.Benchmarks.GoBgp;
using AddressFamily = System.Net.Sockets.AddressFamily;
using Path = System.IO.Path;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Benchmarks.EndToEnd;

/// <summary>
/// Create-to-route-in-BIRD, ShadowNet beside gobgpd, in one run on loopback. BIRD 2 holds 100,000
/// static routes and peers with shadownetd and with gobgpd; it re-exports what they send to a probe
/// (a passive BGP session of ours) that timestamps each prefix as it arrives. So "in BIRD" means BIRD
/// took the route and sent it on, for both contenders alike.
/// </summary>
/// <remarks>
/// <para>ShadowNet: UDP create/delete datagrams (create of a new instance, then delete of the oldest once
/// 1,000 are live), open loop at a fixed rate (paced per millisecond: the sender sleeps rather than
/// spins, since on two cores a spinner takes a core from the daemon), latency from sending a create to
/// its /32 arriving at the probe; then a closed loop with a window of 1,024 datagrams in flight for the
/// highest sustained rate of acknowledged events. The load generator sends as places free up, up to 64
/// datagrams per sendmmsg, and takes replies with recvmmsg: on two cores a generator paying a system
/// call per datagram took half a core from the daemon it measures. The closed loop runs twice: from one
/// socket (a host sending bursts, whose replies group into one segmented send) and from 64 loopback
/// addresses interleaved (a fleet, every reply a datagram of its own).</para>
/// <para>gobgpd: AddPath one call at a time (latency from the call to arrival), and AddPathStream in
/// messages of 100 paths (rate until every route arrived; latency from the write of its message).</para>
/// Usage: <c>dotnet run -c Release -- hooks-to-bird [rate] [seconds] [runs]</c>; bench/hooks-to-bird.sh builds
/// and runs it. For profiling: BENCH_ONLY=open|closed runs only that loop of ShadowNet's (open also prints
/// the daemon's store and activation histograms), BENCH_SYNC=normal, BENCH_WARM=N and BENCH_EXPECTED_LEASES=N
/// (its lease tables' sizing: by default the whole /14 pool, 262,144, as an operator would set it) change the daemon,
/// BENCH_WINDOW=N sets the closed loop's datagrams in flight (1,024), BENCH_WIRE_PROBE=1 adds a probe peering with shadownetd directly (its own part apart from BIRD's),
/// BENCH_DUMP=FILE writes each open-loop create's send time, latency and send timestamp (CLOCK_MONOTONIC seconds, to line up
/// with perf record -k CLOCK_MONOTONIC) to FILE.RUN (and FILE.RUN.wire with the wire probe), and
/// BENCH_DAEMON_TC=0|1 sets the daemon's tiered compilation; BENCH_DAEMON_ENV="NAME=value;..." sets variables for the daemon alone.
/// BENCH_ONLY=sustained runs one long closed loop from one host instead (BENCH_EVENTS, 3,000,000), reporting its rate
/// per second too; give it BENCH_REUSE_DELAY=00:00:02 (the pool's reuse delay, an hour by default) or the /14 runs dry.
/// </remarks>
internal static class HooksToBird
{
    private const int LiveInstances = 1_000;
    private const int PreloadRoutes = 100_000;
    private static readonly byte[] Key = Convert.FromHexString("62656e63682d6b65792d6f6e6c792d6c6f6f706261636b");
    private static readonly uint ShadowBase = Ip("10.64.0.0");
    private static readonly uint GoBgpBase = Ip("10.80.0.0");

    public static async Task<int> RunAsync(string[] args)
    {
        var rate = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10_000;
        var seconds = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5;
        var runs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
        var daemon = Path.GetFullPath(Environment.GetEnvironmentVariable("SHADOWNETD_DLL") ?? "../../src/ShadowNet.Daemon/bin/Release/net10.0/shadownetd.dll");
        if (!File.Exists(daemon))
        {
            Console.Error.WriteLine($"{daemon} is missing: build it with dotnet build -c Release src/ShadowNet.Daemon (bench/hooks-to-bird.sh does)");
            return 2;
        }

        var results = new List<Dictionary<string, double>>();
        for (var run = 1; run <= runs; run++)
        {
            await using var lab = await Lab.StartAsync(daemon);
            var figures = new Dictionary<string, double>();
            // BENCH_ONLY=closed or open: only that loop of ShadowNet's (for profiling the daemon).
            if (Environment.GetEnvironmentVariable("BENCH_ONLY") == "sustained")
            {
                await ShadowNetClosedLoopAsync(lab, SustainedEvents, ClosedWindow, 1, run, figures, sustained: true);
                results.Add(figures);
                Console.WriteLine($"run {run}: " + string.Join(", ", figures.Select(f => $"{f.Key} {f.Value:0.###}")));
                continue;
            }

            if (Environment.GetEnvironmentVariable("BENCH_ONLY") == "closed")
            {
                await ShadowNetClosedLoopAsync(lab, 250_000, ClosedWindow, 1, run, figures);
                await ShadowNetClosedLoopAsync(lab, 250_000, ClosedWindow, FleetHosts, run, figures);
                results.Add(figures);
                continue;
            }

            // Warm-up, not measured: the daemon's first events run freshly compiled code (JIT), and so
            // does its first /metrics answer (the open loop reads the GC counters there).
            await DaemonGcAsync(lab);
            await ShadowNetOpenLoopAsync(lab, rate, 1, -run, []);
            await ShadowNetOpenLoopAsync(lab, rate, seconds, run, figures);
            if (Environment.GetEnvironmentVariable("BENCH_ONLY") == "open")
            {
                using var http = new HttpClient();
                var exposition = await http.GetStringAsync($"http://127.0.0.1:{lab.MetricsPort}/metrics");
                Console.WriteLine(string.Join('\n', exposition.Split('\n').Where(l => l.StartsWith("shadownet_store_", StringComparison.Ordinal)
                    || l.StartsWith("shadownet_route_activation_duration_seconds", StringComparison.Ordinal))));
                results.Add(figures);
                continue;
            }

            await ShadowNetClosedLoopAsync(lab, 200_000, ClosedWindow, 1, run, figures);
            await ShadowNetClosedLoopAsync(lab, 200_000, ClosedWindow, FleetHosts, run, figures);
            await GoBgpAddPathAsync(lab, 3_000, figures);
            await GoBgpStreamAsync(lab, 100_000, figures);
            results.Add(figures);
            Console.WriteLine($"run {run}: " + string.Join(", ", figures.Select(f => $"{f.Key} {f.Value:0.###}")));
        }

        Console.WriteLine();
        Console.WriteLine($"medians of {runs} runs (BIRD holding {PreloadRoutes:N0} routes; shadownetd store sync=full)");
        Console.WriteLine("| figure | median |");
        Console.WriteLine("|---|---|");
        foreach (var key in results[0].Keys)
        {
            Console.WriteLine($"| {key} | {Median(results.Select(r => r[key])):0.###} |");
        }

        return 0;
    }

    /// <summary>The daemon's own garbage collection counters (.NET's System.Runtime meter, from its /metrics).</summary>
    private static async Task<(double Allocated, double Collections, double PauseSeconds)> DaemonGcAsync(Lab lab)
    {
        using var http = new HttpClient();
        var lines = (await http.GetStringAsync($"http://127.0.0.1:{lab.MetricsPort}/metrics")).Split('\n');
        double Sum(string name) => lines.Where(l => l.StartsWith(name, StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
        return (Sum("dotnet_gc_heap_total_allocated_bytes_total"), Sum("dotnet_gc_collections_total"), Sum("dotnet_gc_pause_time_seconds_total"));
    }

    private static async Task ShadowNetOpenLoopAsync(Lab lab, int rate, int seconds, int run, Dictionary<string, double> figures)
    {
        var events = rate * seconds;
        using var load = new HookLoad(lab.HookEndPoint, events, run < 0 ? $"w{-run}-" : $"o{run}-");
        var daemonBefore = run > 0 ? await DaemonGcAsync(lab) : default;
        await Task.Delay(250); // the daemon's answer to the scrape is done before the first create
        var runnerBefore = (Collections: GC.CollectionCount(0), Pause: GC.GetTotalPauseDuration());
        var stolenBefore = StolenMilliseconds();
        var cpuBefore = lab.DaemonCpuSeconds();
        var clock = Stopwatch.StartNew();
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < events; i++)
        {
            var due = started + (long)(i * (double)Stopwatch.Frequency / rate);
            var ahead = due - Stopwatch.GetTimestamp();
            if (ahead > Stopwatch.Frequency / 1000)
            {
                Thread.Sleep(1);
            }

            load.Send(i);
        }

        var sending = clock.Elapsed.TotalSeconds;
        var stolen = StolenMilliseconds() - stolenBefore;
        var cpu = lab.DaemonCpuSeconds() - cpuBefore;
        await load.WaitForAcksAsync(TimeSpan.FromSeconds(10));
        var creates = load.Creates;
        await lab.Probe.WaitForAsync(load.CreatedAddresses(), TimeSpan.FromSeconds(20));
        var latencies = load.RouteLatencies(lab.Probe);
        if (run > 0 && Environment.GetEnvironmentVariable("BENCH_DUMP") is { Length: > 0 } dump)
        {
            File.WriteAllLines($"{dump}.{run}", load.LatencyRows(lab.Probe));
            if (lab.WireProbe is { } direct)
            {
                File.WriteAllLines($"{dump}.{run}.wire", load.LatencyRows(direct));
            }
        }

        if (run > 0)
        {
            // A collection stops the daemon for milliseconds: the tail shows them, so the run counts them.
            var daemonAfter = await DaemonGcAsync(lab);
            figures["shadownet open loop: daemon bytes allocated per event"] = (daemonAfter.Allocated - daemonBefore.Allocated) / events;
            figures["shadownet open loop: daemon GCs"] = daemonAfter.Collections - daemonBefore.Collections;
            figures["shadownet open loop: daemon GC pause ms"] = (daemonAfter.PauseSeconds - daemonBefore.PauseSeconds) * 1000;
            figures["shadownet open loop: runner GCs (load and probes)"] = GC.CollectionCount(0) - runnerBefore.Collections;
            figures["shadownet open loop: runner GC pause ms"] = (GC.GetTotalPauseDuration() - runnerBefore.Pause).TotalMilliseconds;
        }

        figures["shadownet open loop: events/s sent"] = events / sending;
        figures["machine: CPU stolen by the hypervisor while sending, ms per s"] = stolen / sending;
        figures["shadownet open loop: daemon CPU ms per s"] = cpu * 1000 / sending;
        figures["shadownet open loop: events lost"] = events - load.Acknowledged;
        figures["shadownet create->BIRD p50 ms"] = Percentile(latencies, 0.50);
        figures["shadownet create->BIRD p90 ms"] = Percentile(latencies, 0.90);
        figures["shadownet create->BIRD p99 ms"] = Percentile(latencies, 0.99);
        figures["shadownet create->ack p50 ms"] = Percentile(load.AckLatencies(), 0.50);
        figures["shadownet create->ack p99 ms"] = Percentile(load.AckLatencies(), 0.99);
        figures["shadownet routes missing at BIRD"] = creates - latencies.Length;
        if (lab.WireProbe is { } wire)
        {
            var own = load.RouteLatencies(wire);
            figures["shadownet create->its own BGP peer p50 ms"] = Percentile(own, 0.50);
            figures["shadownet create->its own BGP peer p90 ms"] = Percentile(own, 0.90);
            figures["shadownet create->its own BGP peer p99 ms"] = Percentile(own, 0.99);
        }
    }

    /// <summary>
    /// CPU time the hypervisor took from this virtual machine's CPUs so far, all CPUs summed (the steal
    /// column of /proc/stat, in 10 ms ticks, so coarse): while it runs another guest, none of our
    /// processes runs, whatever their priority.
    /// </summary>
    private static double StolenMilliseconds()
    {
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 8 ? double.Parse(fields[8], CultureInfo.InvariantCulture) * 10 : 0;
    }

    /// <summary>Hosts the closed loop's events come from in its fleet-shaped pass (see <see cref="RequestSender"/>).</summary>
    private const int FleetHosts = 64;

    /// <summary>Datagrams in flight at most in the closed loop (BENCH_WINDOW, for profiling; 1,024 by default).</summary>
    private static readonly int ClosedWindow = int.TryParse(Environment.GetEnvironmentVariable("BENCH_WINDOW"), out var w) && w > 0 ? w : 1024;

    /// <summary>Events in the sustained closed loop (BENCH_ONLY=sustained; BENCH_EVENTS, 3,000,000 by default: about 30 s at 100,000 a second).</summary>
    private static readonly int SustainedEvents = int.TryParse(Environment.GetEnvironmentVariable("BENCH_EVENTS"), out var e) && e > 0 ? e : 3_000_000;

    /// <param name="sustained">
    /// A long loop: the acknowledgements are also counted per second (the slowest, median and fastest full
    /// second), and BIRD is not waited for at the end, since addresses come back from their reuse delay
    /// (BENCH_REUSE_DELAY) and an arrival can no longer be told from an earlier one of the same address.
    /// </param>
    private static async Task ShadowNetClosedLoopAsync(Lab lab, int events, int window, int hosts, int run, Dictionary<string, double> figures,
        bool sustained = false)
    {
        using var load = new HookLoad(lab.HookEndPoint, events, hosts == 1 ? $"c{run}-" : $"f{run}-", window, hosts);
        var loop = sustained ? "shadownet sustained closed loop" : hosts == 1 ? "shadownet closed loop" : $"shadownet closed loop, {hosts} hosts";
        var cpuBefore = lab.DaemonCpuSeconds();
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < events;)
        {
            // As places free up, up to a batch at once (one sendmmsg). A lost datagram never frees its
            // place: after 500 ms the loop goes on without it (counted below).
            var room = load.WaitForRoom(500, Math.Min(HookLoad.Batch, events - i));
            load.Send(i, room);
            i += room;
        }

        await load.WaitForAcksAsync(TimeSpan.FromSeconds(10));
        var acked = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cpu = lab.DaemonCpuSeconds() - cpuBefore;
        if (sustained)
        {
            var seconds = load.AcknowledgedPerSecond(started);
            figures[$"{loop}: seconds"] = acked;
            figures[$"{loop}: acknowledged events/s"] = load.Acknowledged / acked;
            figures[$"{loop}: slowest second, events"] = seconds.Min();
            figures[$"{loop}: median second, events"] = seconds.Order().ElementAt(seconds.Length / 2);
            figures[$"{loop}: fastest second, events"] = seconds.Max();
            figures[$"{loop}: events lost"] = events - load.Acknowledged;
            figures[$"{loop}: daemon CPU us per event"] = cpu * 1e6 / load.Acknowledged;
            return;
        }

        // Until the instances still live are all in BIRD. An instance created and deleted within one pass
        // of the daemon's BGP writer is never sent (the Adj-RIB-Out coalesces): counted, not waited for.
        var created = load.CreatedAddresses();
        await lab.Probe.WaitForAsync(created[^Math.Min(LiveInstances, created.Length)..], TimeSpan.FromSeconds(30));
        var inBird = Stopwatch.GetElapsedTime(started).TotalSeconds;
        figures[$"{loop}: acknowledged events/s"] = load.Acknowledged / acked;
        figures[$"{loop}: creates in BIRD/s"] = load.Creates / inBird;
        figures[$"{loop}: events lost"] = events - load.Acknowledged;
        // What the daemon itself spends per event, whatever the load generator and BIRD take of the two cores.
        figures[$"{loop}: daemon CPU us per event"] = cpu * 1e6 / load.Acknowledged;
        figures[$"{loop}: created+deleted before sent (coalesced)"] = created.Count(a => lab.Probe.ArrivalOf(a) is null or 0);
    }

    private static async Task GoBgpAddPathAsync(Lab lab, int routes, Dictionary<string, double> figures)
    {
        var sent = new long[routes];
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < routes; i++)
        {
            sent[i] = Stopwatch.GetTimestamp();
            await lab.GoBgp.AddPathAsync(new AddPathRequest { Path = GoBgpPath(GoBgpBase + (uint)i) });
        }

        var calls = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var addresses = Enumerable.Range(0, routes).Select(i => GoBgpBase + (uint)i).ToArray();
        await lab.Probe.WaitForAsync(addresses, TimeSpan.FromSeconds(30));
        var latencies = lab.Probe.Latencies(addresses, sent);
        figures["gobgpd AddPath: routes/s"] = routes / calls;
        figures["gobgpd AddPath->BIRD p50 ms"] = Percentile(latencies, 0.50);
        figures["gobgpd AddPath->BIRD p90 ms"] = Percentile(latencies, 0.90);
        figures["gobgpd AddPath->BIRD p99 ms"] = Percentile(latencies, 0.99);
    }

    private static async Task GoBgpStreamAsync(Lab lab, int routes, Dictionary<string, double> figures)
    {
        const int PerMessage = 100;
        var first = GoBgpBase + 0x10000u;
        var sent = new long[routes];
        var started = Stopwatch.GetTimestamp();
        using (var stream = lab.GoBgp.AddPathStream())
        {
            for (var i = 0; i < routes; i += PerMessage)
            {
                var request = new AddPathStreamRequest();
                for (var j = i; j < Math.Min(routes, i + PerMessage); j++)
                {
                    request.Paths.Add(GoBgpPath(first + (uint)j));
                }

                var now = Stopwatch.GetTimestamp();
                Array.Fill(sent, now, i, Math.Min(PerMessage, routes - i));
                await stream.RequestStream.WriteAsync(request);
            }

            await stream.RequestStream.CompleteAsync();
            await stream.ResponseAsync;
        }

        var addresses = Enumerable.Range(0, routes).Select(i => first + (uint)i).ToArray();
        await lab.Probe.WaitForAsync(addresses, TimeSpan.FromSeconds(60));
        var inBird = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var latencies = lab.Probe.Latencies(addresses, sent);
        figures["gobgpd AddPathStream: routes in BIRD/s"] = latencies.Length / inBird;
        figures["gobgpd AddPathStream->BIRD p50 ms"] = Percentile(latencies, 0.50);
        figures["gobgpd AddPathStream->BIRD p99 ms"] = Percentile(latencies, 0.99);
    }

    private static GoBgp.Path GoBgpPath(uint address) => new()
    {
        Family = new Family { Afi = Family.Types.Afi.Ip, Safi = Family.Types.Safi.Unicast },
        Nlri = Any.Pack(new IPAddressPrefix { Prefix = new IPAddress(BinaryPrimitives.ReverseEndianness(address)).ToString(), PrefixLen = 32 }),
        Pattrs =
        {
            Any.Pack(new OriginAttribute { Origin = 0 }),
            Any.Pack(new NextHopAttribute { NextHop = "192.0.2.1" }),
        },
    };

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static uint Ip(string text) => BinaryPrimitives.ReadUInt32BigEndian(IPAddress.Parse(text).GetAddressBytes());

    /// <summary>
    /// UDP create/delete load: event i creates a new instance, except that once 1,000 are live every
    /// other event deletes the oldest. Replies are read on their own thread.
    /// </summary>
    private sealed class HookLoad : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        private readonly string _prefix;
        private readonly ulong _firstSequence = (ulong)DateTime.UtcNow.Ticks;
        private readonly bool[] _isCreate;
        private readonly int[] _instance;
        private readonly long[] _sent;
        private readonly long[] _acked;
        private readonly uint[] _address;
        private readonly Thread _receiver;
        private readonly byte[] _buffer = new byte[Batch * HookDatagram.MaxRequestLength];
        private readonly int[] _lengths = new int[Batch];
        private readonly DatagramBatch _io;
        private readonly RequestSender _sender;
        private readonly SemaphoreSlim? _room;
        private volatile bool _stopping;
        private int _acknowledged;

        /// <param name="window">Datagrams in flight at most (closed loop); 0: no limit (open loop).</param>
        /// <param name="hosts">1: one socket and address; more: each event from the next of that many loopback addresses.</param>
        public HookLoad(IPEndPoint server, int events, string prefix, int window = 0, int hosts = 1)
        {
            _prefix = prefix;
            _room = window > 0 ? new SemaphoreSlim(window) : null;
            _isCreate = new bool[events];
            _instance = new int[events];
            _sent = new long[events];
            _acked = new long[events];
            _address = new uint[events];
            int created = 0, deleted = 0;
            for (var i = 0; i < events; i++)
            {
                _isCreate[i] = created - deleted < LiveInstances || i % 2 == 0;
                _instance[i] = _isCreate[i] ? created++ : deleted++;
            }

            HookServer.SetReceiveBuffer(_socket, 8 << 20);
            _socket.ReceiveTimeout = 200;
            if (hosts == 1)
            {
                _socket.Connect(server);
            }
            else
            {
                _socket.Bind(new IPEndPoint(IPAddress.Any, 0)); // replies to every 127.0.1.x come back here
            }

            _io = new DatagramBatch(_socket, Batch, HookDatagram.ReplyLength + 1);
            _sender = new RequestSender(_socket, server, Batch, hosts);
            _receiver = new Thread(Receive) { IsBackground = true, Name = "bench-replies" };
            _receiver.Start();
        }

        public int Acknowledged => Volatile.Read(ref _acknowledged);

        public int Creates => _isCreate.Count(c => c);

        /// <summary>Acknowledgements in each full second from <paramref name="started"/> (a Stopwatch timestamp) to the last one.</summary>
        public int[] AcknowledgedPerSecond(long started)
        {
            var last = _acked.Max();
            var seconds = new int[Math.Max(1, (int)((last - started) / Stopwatch.Frequency))];
            foreach (var at in _acked)
            {
                var second = (int)((at - started) / Stopwatch.Frequency);
                if (at != 0 && second < seconds.Length)
                {
                    seconds[second]++;
                }
            }

            return seconds;
        }

        /// <summary>Datagrams sent and replies taken per system call, as the daemon does.</summary>
        public const int Batch = 64;

        /// <summary>Waits up to <paramref name="timeoutMs"/> for one free place, then takes what else is free, up to <paramref name="most"/>.</summary>
        public int WaitForRoom(int timeoutMs, int most)
        {
            if (_room is null)
            {
                return most;
            }

            _room.Wait(timeoutMs);
            var room = 1;
            while (room < most && _room.Wait(0))
            {
                room++;
            }

            return room;
        }

        /// <summary>Sends events <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> - 1 in one system call.</summary>
        public void Send(int first, int count = 1)
        {
            Span<byte> name = stackalloc byte[24];
            var length = System.Text.Encoding.ASCII.GetBytes(_prefix, name);
            for (var k = 0; k < count; k++)
            {
                var i = first + k;
                _instance[i].TryFormat(name[length..], out var digits, provider: CultureInfo.InvariantCulture);
                _lengths[k] = HookDatagram.WriteRequest(_buffer.AsSpan(k * HookDatagram.MaxRequestLength, HookDatagram.MaxRequestLength),
                    _isCreate[i] ? HookKind.Create : HookKind.Delete, _firstSequence + (ulong)i, 1, Key, IpFamily.IPv4, null, name[..(length + digits)], "bench"u8);
            }

            var now = Stopwatch.GetTimestamp();
            _sent.AsSpan(first, count).Fill(now);
            _sender.Send(_buffer, HookDatagram.MaxRequestLength, _lengths.AsSpan(0, count), first);
        }

        public async Task WaitForAcksAsync(TimeSpan patience)
        {
            var waited = Stopwatch.StartNew();
            while (Acknowledged < _sent.Count(s => s != 0) && waited.Elapsed < patience)
            {
                await Task.Delay(10);
            }
        }

        public uint[] CreatedAddresses() => [.. _address.Where((a, i) => _isCreate[i] && a != 0)];

        public double[] RouteLatencies(Probe probe)
        {
            var latencies = new List<double>();
            for (var i = 0; i < _sent.Length; i++)
            {
                if (_isCreate[i] && _address[i] != 0 && probe.ArrivalOf(_address[i]) is long arrival and > 0)
                {
                    latencies.Add((arrival - _sent[i]) * 1000.0 / Stopwatch.Frequency);
                }
            }

            return [.. latencies.Order()];
        }

        /// <summary>Each create's send time (ms from the first send) and latency to the probe, for BENCH_DUMP.</summary>
        public IEnumerable<string> LatencyRows(Probe probe)
        {
            for (var i = 0; i < _sent.Length; i++)
            {
                if (_isCreate[i] && _address[i] != 0 && probe.ArrivalOf(_address[i]) is long arrival and > 0)
                {
                    yield return FormattableString.Invariant($"{(_sent[i] - _sent[0]) * 1000.0 / Stopwatch.Frequency:0.000} {(arrival - _sent[i]) * 1000.0 / Stopwatch.Frequency:0.000} {_sent[i] / (double)Stopwatch.Frequency:0.000000}");
                }
            }
        }

        public double[] AckLatencies() =>
            [.. Enumerable.Range(0, _sent.Length).Where(i => _isCreate[i] && _acked[i] != 0).Select(i => (_acked[i] - _sent[i]) * 1000.0 / Stopwatch.Frequency).Order()];

        public void Dispose()
        {
            _stopping = true;
            _receiver.Join();
            _socket.Dispose();
            _io.Dispose();
            _sender.Dispose();
            _room?.Dispose();
        }

        private void Receive()
        {
            while (!_stopping)
            {
                int count;
                try
                {
                    count = _io.Receive();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }

                var now = Stopwatch.GetTimestamp();
                var freed = 0;
                for (var k = 0; k < count; k++)
                {
                    if (!HookDatagram.TryParseReply(_io.Datagram(k), Key, out var parsed, out _))
                    {
                        continue;
                    }

                    var i = (long)(parsed.Sequence - _firstSequence);
                    if (i < 0 || i >= _sent.Length || _acked[i] != 0)
                    {
                        continue;
                    }

                    if (parsed.Address is { } address && !address.IsIPv6)
                    {
                        _address[i] = (uint)address.Value;
                    }

                    _acked[i] = now;
                    Interlocked.Increment(ref _acknowledged);
                    freed++;
                }

                if (freed > 0)
                {
                    _room?.Release(freed);
                }
            }
        }
    }

    /// <summary>Our passive BGP session (from BIRD, or from shadownetd directly): the time each host route in 10.64.0.0-10.95.255.255 first arrived.</summary>
    private sealed class Probe : IAsyncDisposable
    {
        private const int Span = 1 << 21;
        private readonly long[] _arrival = new long[Span];
        private readonly BgpSpeaker _speaker;

        public Probe(IPEndPoint listen, IPAddress peerAddress, uint peerAs)
        {
            _speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65005, RouterId = listen.Address, Listen = { listen } });
            var peer = _speaker.AddPeer(new BgpPeerOptions { Address = peerAddress, RemoteAs = peerAs, Passive = true, HoldTimeSeconds = 90 });
            peer.UpdateReceived += OnUpdate;
            Peer = peer;
            _speaker.Start();
        }

        public BgpPeer Peer { get; }

        public long? ArrivalOf(uint address) => address - ShadowBase < Span ? Volatile.Read(ref _arrival[address - ShadowBase]) : null;

        public double[] Latencies(uint[] addresses, long[] sent) =>
            [.. addresses.Select((a, i) => (Arrival: ArrivalOf(a) ?? 0, Sent: sent[i])).Where(x => x.Arrival > 0)
                .Select(x => (x.Arrival - x.Sent) * 1000.0 / Stopwatch.Frequency).Order()];

        public async Task WaitForAsync(uint[] addresses, TimeSpan patience)
        {
            var waited = Stopwatch.StartNew();
            while (addresses.Any(a => ArrivalOf(a) is null or 0) && waited.Elapsed < patience)
            {
                await Task.Delay(20);
            }
        }

        public ValueTask DisposeAsync() => _speaker.DisposeAsync();

        private void OnUpdate(BgpPeer peer, UpdateMessage update)
        {
            var now = Stopwatch.GetTimestamp();
            foreach (var prefix in update.Announced)
            {
                var offset = prefix.IPv4Bits - ShadowBase;
                if (!prefix.IsIPv6 && prefix.Length == 32 && offset < Span && _arrival[offset] == 0)
                {
                    Volatile.Write(ref _arrival[offset], now);
                }
            }
        }
    }

    /// <summary>BIRD 2 with 100,000 static routes, gobgpd, shadownetd and the probe, on 127.0.0.2-5.</summary>
    private sealed class Lab : IAsyncDisposable
    {
        private readonly string _folder = Directory.CreateTempSubdirectory("shadownet-bench-").FullName;
        private readonly List<Process> _processes = [];
        private Process? _daemon;

        /// <summary>User plus system CPU time of shadownetd so far (/proc/PID/stat, in clock ticks of 1/100 s).</summary>
        public double DaemonCpuSeconds()
        {
            var stat = File.ReadAllText($"/proc/{_daemon!.Id}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        }
        private GrpcChannel? _channel;

        public required IPEndPoint HookEndPoint { get; init; }

        /// <summary>shadownetd's Prometheus endpoint: its own commit and activation histograms explain a run.</summary>
        public required int MetricsPort { get; init; }

        public Probe Probe { get; private set; } = null!;

        /// <summary>With BENCH_WIRE_PROBE=1: a second passive peer of shadownetd itself (127.0.0.6), to time the
        /// daemon's own part apart from BIRD's (it adds a session for the daemon to feed).</summary>
        public Probe? WireProbe { get; private set; }

        public GobgpApi.GobgpApiClient GoBgp { get; private set; } = null!;

        public static async Task<Lab> StartAsync(string daemon)
        {
            var ports = FreePorts(7);
            var lab = new Lab { HookEndPoint = new IPEndPoint(IPAddress.Loopback, ports[4]), MetricsPort = ports[5] };
            try
            {
                await lab.StartPartsAsync(daemon, birdPort: ports[0], probePort: ports[1], gobgpPort: ports[2], gobgpApi: ports[3], wirePort: ports[6]);
                return lab;
            }
            catch
            {
                await lab.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _processes)
            {
                try
                {
                    process.Kill(true);
                    await process.WaitForExitAsync();
                }
                catch (InvalidOperationException)
                {
                }

                process.Dispose();
            }

            if (Probe is not null)
            {
                await Probe.DisposeAsync();
            }

            if (WireProbe is not null)
            {
                await WireProbe.DisposeAsync();
            }

            _channel?.Dispose();
            Directory.Delete(_folder, recursive: true);
        }

        private async Task StartPartsAsync(string daemon, int birdPort, int probePort, int gobgpPort, int gobgpApi, int wirePort)
        {
            Probe = new Probe(new IPEndPoint(IPAddress.Parse("127.0.0.5"), probePort), IPAddress.Parse("127.0.0.2"), 65002);
            var wirePeer = "";
            if (Environment.GetEnvironmentVariable("BENCH_WIRE_PROBE") == "1")
            {
                WireProbe = new Probe(new IPEndPoint(IPAddress.Parse("127.0.0.6"), wirePort), IPAddress.Parse("127.0.0.3"), 65003);
                wirePeer = $$""", { "address": "127.0.0.6", "port": {{wirePort}}, "remoteAs": 65005, "localAddress": "127.0.0.3", "families": [ "ipv4" ] }""";
            }

            var preload = string.Join('\n', Enumerable.Range(0, PreloadRoutes).Select(i => $"  route 172.16.{i >> 8 & 255}.{i & 255}/32 blackhole;")
                .Select((line, i) => i < 65_536 ? line : line.Replace("172.16.", "172.17.", StringComparison.Ordinal)));
            File.WriteAllText(Path.Combine(_folder, "bird.conf"), $$"""
                router id 127.0.0.2;
                protocol device {}
                protocol static preload {
                  ipv4;
                {{preload}}
                }
                template bgp common {
                  local 127.0.0.2 port {{birdPort}} as 65002;
                  multihop; strict bind on; hold time 90;
                  connect delay time 1; connect retry time 1;
                }
                protocol bgp sn from common { neighbor 127.0.0.3 as 65003; passive on; ipv4 { import all; export none; }; }
                protocol bgp gb from common { neighbor 127.0.0.4 port {{gobgpPort}} as 65004; ipv4 { import all; export none; }; }
                protocol bgp probe from common {
                  neighbor 127.0.0.5 port {{probePort}} as 65005;
                  ipv4 { import none; export filter { if proto = "sn" || proto = "gb" then accept; reject; }; };
                }
                """);
            Start("/usr/sbin/bird", $"-f -c {_folder}/bird.conf -s {_folder}/bird.ctl -P {_folder}/bird.pid");

            File.WriteAllText(Path.Combine(_folder, "gobgpd.toml"), $$"""
                [global.config]
                  as = 65004
                  router-id = "127.0.0.4"
                  port = {{gobgpPort}}
                  local-address-list = ["127.0.0.4"]
                [[neighbors]]
                  [neighbors.config]
                    neighbor-address = "127.0.0.2"
                    peer-as = 65002
                  [neighbors.transport.config]
                    local-address = "127.0.0.4"
                    passive-mode = true
                  [neighbors.ebgp-multihop.config]
                    enabled = true
                    multihop-ttl = 5
                """);
            Start("gobgpd", $"-f {_folder}/gobgpd.toml --api-hosts 127.0.0.1:{gobgpApi} --pprof-disable -l warn");

            File.WriteAllText(Path.Combine(_folder, "shadownetd.json"), $$"""
                {
                  "store": { "path": "{{_folder}}/state.db", "sync": "{{Environment.GetEnvironmentVariable("BENCH_SYNC") ?? "full"}}", "expectedLeases": {{Environment.GetEnvironmentVariable("BENCH_EXPECTED_LEASES") ?? "262144"}} },
                  "bgp": { "localAs": 65003, "routerId": "127.0.0.3", "gracefulRestart": 0,
                    "peers": [ { "address": "127.0.0.2", "port": {{birdPort}}, "remoteAs": 65002, "localAddress": "127.0.0.3", "families": [ "ipv4" ] }{{wirePeer}} ] },
                  "pools": [ { "name": "bench", "kind": "shadow", "prefixes": [ "10.64.0.0/14" ], "application": "bench", "reuseDelay": "{{Environment.GetEnvironmentVariable("BENCH_REUSE_DELAY") ?? "01:00:00"}}" } ],
                  "warm": [ { "application": "bench", "count": {{Environment.GetEnvironmentVariable("BENCH_WARM") ?? "1000"}} } ],
                  "routes": { "defaultNextHopV4": "192.0.2.1" },
                  "hooks": { "udp": { "listen": "{{HookEndPoint}}", "keys": { "1": "{{Convert.ToHexString(Key)}}" } } },
                  "metrics": { "listen": "127.0.0.1:{{MetricsPort}}" }
                }
                """);
            _daemon = Start("dotnet", $"{daemon} --config {_folder}/shadownetd.json --Logging:LogLevel:Default Warning", daemonJit: true);

            _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{gobgpApi}");
            GoBgp = new GobgpApi.GobgpApiClient(_channel);
            var birdc = $"-s {_folder}/bird.ctl show protocols";
            var waited = Stopwatch.StartNew();
            while (true)
            {
                var protocols = File.Exists($"{_folder}/bird.ctl") ? await Output("/usr/sbin/birdc", birdc) : "";
                var established = protocols.Split('\n').Count(l => l.Contains("Established", StringComparison.Ordinal));
                if (established == 3 && Probe.Peer.State == BgpSessionState.Established
                    && WireProbe?.Peer.State is null or BgpSessionState.Established)
                {
                    break;
                }

                if (waited.Elapsed > TimeSpan.FromSeconds(60))
                {
                    throw new TimeoutException($"sessions did not come up:\n{protocols}");
                }

                await Task.Delay(250);
            }

            var count = await Output("/usr/sbin/birdc", $"-s {_folder}/bird.ctl show route count");
            Console.WriteLine($"lab up in {waited.Elapsed.TotalSeconds:0.0} s: BIRD {count.Split('\n').FirstOrDefault(l => l.Contains("routes", StringComparison.Ordinal))?.Trim()}");
        }

        private Process Start(string file, string arguments, bool daemonJit = false)
        {
            var start = new ProcessStartInfo(file, arguments)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            if (daemonJit)
            {
                // The daemon compiles as its own runtimeconfig says, not as this runner was told to
                // (hooks-to-bird.sh compiles the runner fully at once); BENCH_DAEMON_TC=0|1 overrides.
                start.Environment.Remove("DOTNET_TieredCompilation");
                if (Environment.GetEnvironmentVariable("BENCH_DAEMON_TC") is { Length: > 0 } tiered)
                {
                    start.Environment["DOTNET_TieredCompilation"] = tiered;
                }

                // BENCH_DAEMON_ENV="NAME=value;NAME=value": runtime settings for the daemon alone.
                foreach (var setting in (Environment.GetEnvironmentVariable("BENCH_DAEMON_ENV") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
                {
                    var parts = setting.Split('=', 2);
                    start.Environment[parts[0]] = parts.Length == 2 ? parts[1] : "";
                }
            }

            var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { Length: > 0 } line)
                {
                    Console.Error.WriteLine($"[{Path.GetFileName(file)}] {line}");
                }
            };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _processes.Add(process);
            return process;
        }

        private static async Task<string> Output(string file, string arguments)
        {
            using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, UseShellExecute = false })!;
            var text = await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync();
            return text;
        }

        private static int[] FreePorts(int count)
        {
            var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
            listeners.ForEach(l => l.Start());
            var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
            listeners.ForEach(l => l.Stop());
            return ports;
        }
    }
}
