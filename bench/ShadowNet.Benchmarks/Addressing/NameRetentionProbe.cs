using System.Diagnostics;

namespace ShadowNet.Benchmarks.Addressing;

/// <summary>
/// What keeping a name object per lease costs in collection pauses, apart from the daemon: a table of
/// leases (250,000 by default, the bench's /14 pool after some runs) written at 10,000 events a second
/// at random addresses, each write with a new instance name, plus garbage per event so that gen0
/// collections come every second or two. Three layouts:
/// - <c>refs</c>: the name strings in the table's entries (as the allocator's dictionaries hold them);
/// - <c>handles</c>: the entries hold an int handle, the strings sit in one append-only list;
/// - <c>none</c>: no name object kept at all (as the allocator keeps names since stop 22: characters in an arena).
/// Usage: <c>dotnet bin/Release/net10.0/ShadowNet.Benchmarks.dll name-retention [refs|handles|none] [leases] [seconds] [garbage bytes per event]</c>.
/// </summary>
internal static class NameRetentionProbe
{
    private const int EventsPerMillisecond = 10;

    public static int Run(string[] args)
    {
        var layout = args.Length > 1 ? args[1] : "refs";
        var (leases, seconds, garbage) = (Argument(2, 250_000), Argument(3, 20), Argument(4, 1000));
        if (layout is not ("refs" or "handles" or "none"))
        {
            Console.Error.WriteLine("layout: refs, handles or none");
            return 2;
        }

        var random = new Random(1);
        var withNames = new Dictionary<int, (string Pool, string? Application, string? Instance, long SinceMs)>(leases);
        var withHandles = new Dictionary<int, (int Pool, int Application, int Instance, long SinceMs)>(leases);
        var names = new List<string>(leases);
        for (var i = 0; i < leases; i++)
        {
            Store(i, "instance-" + i, i);
        }

        GC.Collect();
        GC.Collect();
        var (pauseAtStart, gen0AtStart, gen1AtStart) = (GC.GetTotalPauseDuration(), GC.CollectionCount(0), GC.CollectionCount(1));
        var worst = TimeSpan.Zero;
        var lastPause = pauseAtStart;
        long events = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            for (var k = 0; k < EventsPerMillisecond; k++, events++)
            {
                Store(random.Next(leases), "instance-" + (leases + events), events);
                GC.KeepAlive(new byte[garbage]);
            }

            var pause = GC.GetTotalPauseDuration();
            worst = pause - lastPause > worst ? pause - lastPause : worst;
            lastPause = pause;
            Thread.Sleep(1);
        }

        Console.WriteLine($"name-retention {layout}, {leases} leases, {events} events in {seconds} s: gen0 {GC.CollectionCount(0) - gen0AtStart}, " +
            $"gen1 {GC.CollectionCount(1) - gen1AtStart}, paused {(GC.GetTotalPauseDuration() - pauseAtStart).TotalMilliseconds:F1} ms in all, " +
            $"at most {worst.TotalMilliseconds:F1} ms within one 1 ms tick");
        return 0;

        int Argument(int index, int fallback) =>
            args.Length > index ? int.Parse(args[index], System.Globalization.CultureInfo.InvariantCulture) : fallback;

        void Store(int address, string instance, long since)
        {
            switch (layout)
            {
                case "refs":
                    withNames[address] = ("pool", "bench", instance, since);
                    break;
                case "handles":
                    names.Add(instance);
                    withHandles[address] = (0, 0, names.Count - 1, since);
                    break;
                default:
                    withHandles[address] = (0, 0, instance.Length, since);
                    break;
            }
        }
    }
}
