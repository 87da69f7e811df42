using System.Diagnostics;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.CrashWorker;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Tests.Support;
using Xunit.Abstractions;

namespace ShadowNet.Controller.Tests.State;

/// <summary>
/// A child process runs random allocator operations on a store and reports each acknowledged one; the
/// test kills it with SIGKILL at random moments, then checks the store against the reports: everything
/// acknowledged is there, an operation still in flight at the kill is either wholly there or wholly
/// absent, and the allocator's invariants hold on reload.
/// </summary>
public class CrashRecoveryTests(ITestOutputHelper output)
{
    private const int Workers = 6;
    private const int Kills = 24;

    [Fact]
    public async Task EveryAcknowledgedOperationSurvivesRepeatedSigkill()
    {
        using var folder = new TempDirectory("state");
        var store = folder.File("state.db");
        var model = new Dictionary<int, HashSet<Row>>();
        for (var w = 0; w < Workers; w++)
        {
            model[w] = [];
        }

        var random = new Random(20261125);
        var totalAcks = 0;
        var inFlightApplied = 0;
        var inFlightAbsent = 0;
        var deadline = Stopwatch.StartNew();
        for (var run = 0; run < Kills; run++)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(150), $"crash test ran out of time after {run} kills");
            var lines = await RunAndKillAsync(store, run, random.Next(), TimeSpan.FromMilliseconds(random.Next(150, 600)));
            var inFlight = new Dictionary<int, string[]>();
            foreach (var line in lines)
            {
                var parts = line.Split(' ');
                var worker = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
                if (parts[0] == "B")
                {
                    inFlight[worker] = parts;
                }
                else
                {
                    inFlight.Remove(worker);
                    Apply(model[worker], worker, parts);
                    totalAcks++;
                }
            }

            var actual = await LoadAsync(store);
            for (var w = 0; w < Workers; w++)
            {
                var have = actual.TryGetValue(w, out var rows) ? rows : [];
                var expected = model[w];
                if (have.SetEquals(expected))
                {
                    if (inFlight.ContainsKey(w))
                    {
                        inFlightAbsent++;
                    }

                    continue;
                }

                Assert.True(inFlight.TryGetValue(w, out var op), $"run {run} worker {w}: store differs from the acknowledged operations with nothing in flight.\n{Describe(expected, have)}");
                var problem = ExplainInFlight(op!, expected, have);
                Assert.True(problem is null, $"run {run} worker {w}: in-flight {string.Join(' ', op!)} does not explain the store: {problem}\n{Describe(expected, have)}");
                inFlightApplied++;
                model[w] = have;
            }
        }

        output.WriteLine($"{Kills} kills, {totalAcks} acknowledged operations checked, in flight at a kill: {inFlightApplied} committed, {inFlightAbsent} not");
        Assert.True(totalAcks > 2000, $"only {totalAcks} acknowledged operations: the child barely ran");
    }

    private static async Task<List<string>> RunAndKillAsync(string store, int run, int seed, TimeSpan runFor)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "ShadowNet.Controller.CrashWorker.dll");
        using var child = Process.Start(new ProcessStartInfo("dotnet", $"{dll} {store} {run} {seed} {Workers}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("crash worker did not start");
        var lines = new List<string>();
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stderr = new System.Text.StringBuilder();
        child.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            if (e.Data == "READY")
            {
                ready.TrySetResult();
                return;
            }

            lock (lines)
            {
                lines.Add(e.Data);
            }
        };
        child.ErrorDataReceived += (_, e) =>
        {
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
        };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Task.WhenAny(ready.Task, child.WaitForExitAsync(timeout.Token));
        Assert.True(ready.Task.IsCompleted, $"crash worker failed to start: {stderr}");
        await Task.Delay(runFor);
        child.Kill();

        // WaitForExitAsync also waits for the end of the redirected output, so every line written before the kill is in.
        await child.WaitForExitAsync(timeout.Token);
        Assert.Equal(137, child.ExitCode);
        lock (lines)
        {
            return [.. lines];
        }
    }

    private static async Task<Dictionary<int, HashSet<Row>>> LoadAsync(string store)
    {
        // Opening runs the same restore and invariant checks as the daemon's start-up.
        await using var allocator = DurableAllocator.Open(CrashWorkload.Pools(), SqliteAllocationStore.Open(store));
        Assert.Empty(await allocator.ReadAsync(a => a.CheckInvariants()));
        var leases = await allocator.ReadAsync(a => a.Leases.ToList());
        var byWorker = new Dictionary<int, HashSet<Row>>();
        foreach (var lease in leases)
        {
            var worker = int.Parse(lease.Application!.AsSpan(3), System.Globalization.CultureInfo.InvariantCulture);
            if (!byWorker.TryGetValue(worker, out var rows))
            {
                byWorker[worker] = rows = [];
            }

            rows.Add(new Row(lease.Address, lease.State, lease.Instance, lease.Preallocated));
        }

        return byWorker;
    }

    /// <summary>Applies one acknowledged report line to the worker's expected rows.</summary>
    private static void Apply(HashSet<Row> rows, int worker, string[] ack)
    {
        switch (ack[2])
        {
            case "RES":
                foreach (var address in Addresses(ack[4]))
                {
                    Assert.True(rows.Add(new Row(address, LeaseState.Reserved, null, false)), $"worker {worker}: {address} reserved twice");
                }

                break;
            case "RFOR" when ack[4] != "-":
                rows.Add(new Row(Address.Parse(ack[4]), LeaseState.Reserved, ack[3], false));
                break;
            case "CLAIM" when ack[5] is "hit" or "miss":
                var claimed = Address.Parse(ack[4]);
                var hit = ack[5] == "hit";
                if (hit)
                {
                    Assert.True(rows.Remove(new Row(claimed, LeaseState.Reserved, null, false)) || rows.Remove(new Row(claimed, LeaseState.Reserved, ack[3], false)),
                        $"worker {worker}: hit on {claimed}, which was not reserved for it");
                }

                rows.Add(new Row(claimed, LeaseState.Assigned, ack[3], hit));
                break;
            case "REL" when ack[4] != "-":
                var released = rows.Single(r => r.Instance == ack[3] && r.State == LeaseState.Assigned);
                Assert.Equal(Address.Parse(ack[4]), released.Address);
                rows.Remove(released);
                rows.Add(released with { State = LeaseState.Quarantined });
                break;
            case "SHRINK":
                foreach (var removed in Addresses(ack[4]))
                {
                    Assert.True(rows.Remove(new Row(removed, LeaseState.Reserved, null, false)), $"worker {worker}: shrink removed {removed}, which was not reserved");
                }

                break;
        }
    }

    /// <summary>Null when the store equals the expected rows with the in-flight operation applied whole.</summary>
    private static string? ExplainInFlight(string[] op, HashSet<Row> expected, HashSet<Row> actual)
    {
        var added = actual.Except(expected).ToList();
        var removed = expected.Except(actual).ToList();
        var family = op[2] is "RES" or "SHRINK" ? (op[3] == "6" ? IpFamily.IPv6 : IpFamily.IPv4) : CrashWorkload.FamilyOf(op[3]);
        switch (op[2])
        {
            case "RES":
                return removed.Count == 0 && added.Count <= int.Parse(op[4], System.Globalization.CultureInfo.InvariantCulture)
                    && added.All(r => r.State == LeaseState.Reserved && r.Instance is null && r.Address.Family == family)
                    ? null : "reserve should only add unnamed reservations of its family";
            case "RFOR":
                return removed.Count == 0 && added is [{ State: LeaseState.Reserved } named] && named.Instance == op[3]
                    ? null : "named reserve should add exactly one reservation for its instance";
            case "CLAIM":
                if (added is not [{ State: LeaseState.Assigned } claim] || claim.Instance != op[3] || claim.Address.Family != family)
                {
                    return "claim should add exactly one assignment to its instance";
                }

                return claim.Preallocated
                    ? (removed is [{ State: LeaseState.Reserved } taken] && taken.Address == claim.Address && (taken.Instance is null || taken.Instance == op[3]) ? null : "a hit must take one of the application's reservations")
                    : (removed.Count == 0 && !expected.Any(r => r.State == LeaseState.Reserved && r.Instance is null && r.Address.Family == family) ? null : "a miss with reservations left, or a miss that removed rows");
            case "REL":
                return removed is [{ State: LeaseState.Assigned } gone] && gone.Instance == op[3] && added is [{ State: LeaseState.Quarantined } quarantined]
                    && quarantined == gone with { State = LeaseState.Quarantined }
                    ? null : "release should turn exactly its instance's assignment into a quarantined lease";
            case "SHRINK":
                var unnamed = expected.Count(r => r.State == LeaseState.Reserved && r.Instance is null && r.Address.Family == family);
                var keep = int.Parse(op[4], System.Globalization.CultureInfo.InvariantCulture);
                return added.Count == 0 && removed.Count == Math.Max(0, unnamed - keep)
                    && removed.All(r => r.State == LeaseState.Reserved && r.Instance is null && r.Address.Family == family)
                    ? null : "shrink should remove exactly the unnamed reservations above the number kept";
            default:
                return $"unknown operation {op[2]}";
        }
    }

    private static IEnumerable<Address> Addresses(string list) => list == "-" ? [] : list.Split(',').Select(Address.Parse);

    private static string Describe(HashSet<Row> expected, HashSet<Row> actual) =>
        $"missing: {string.Join(", ", expected.Except(actual))}\nunexpected: {string.Join(", ", actual.Except(expected))}";

    private readonly record struct Row(Address Address, LeaseState State, string? Instance, bool Preallocated);
}
