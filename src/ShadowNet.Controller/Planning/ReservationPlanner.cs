using ShadowNet.Addressing;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Routing;

namespace ShadowNet.Controller.Planning;

public sealed record PlannerOptions
{
    /// <summary>Reservations above the target are kept until the excess passes this many addresses...</summary>
    public int ShrinkHysteresis { get; init; } = 2;

    /// <summary>
    /// ...and this long has passed since the last growth: reservations do not flap. One forecast step by
    /// default: in the NAB replays a 15-minute cool-down kept reservations after each peak that caught
    /// nothing (models/README.md).
    /// </summary>
    public TimeSpan ShrinkCooldown { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Reservations kept for each application whatever its forecast (a warm floor): a jump from a quiet
    /// window gives a forecaster no sign, and this many of its creates still find an address.
    /// </summary>
    public int MinimumReserve { get; init; }
}

/// <summary>What one planning step did for an application.</summary>
public readonly record struct PlanStep(int Target, int Reserved, int Active, int Added, int Removed);

/// <summary>
/// The input side of the Shadow Network Allocator: per application, target reservations = forecast
/// minus active instances; grows at once (through the route manager, so the routes are staged), and
/// shrinks only past a hysteresis and after a cool-down, so reservations do not flap. The target is
/// also the application's demand: addresses it released come back to it after their reuse delay.
/// </summary>
public sealed class ReservationPlanner(ActiveRouteManager manager, DurableAllocator allocator, PlannerOptions options)
{
    private readonly Dictionary<(string, IpFamily), DateTimeOffset> _lastGrowth = [];

    public async Task<PlanStep> PlanAsync(string application, IpFamily family, int forecastInstances, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var usage = await allocator.ReadAsync(a => a.GetUsage(application, family), cancellationToken);
        var target = Math.Max(options.MinimumReserve, forecastInstances - usage.Assigned);
        usage = await manager.SetDemandAsync(application, family, target, cancellationToken); // counts addresses that came back

        var unnamed = usage.Reserved; // reservations for whichever instance comes (named ones are spoken for)
        if (unnamed < target)
        {
            var added = (await manager.ReserveAsync(application, family, target - unnamed, cancellationToken)).Count;
            _lastGrowth[(application, family)] = now;
            return new PlanStep(target, usage.Reserved + added, usage.Assigned, added, 0);
        }

        var grew = _lastGrowth.TryGetValue((application, family), out var at) ? at : DateTimeOffset.MinValue;
        if (unnamed - target > options.ShrinkHysteresis && now - grew >= options.ShrinkCooldown)
        {
            var removed = (await manager.ShrinkAsync(application, family, target, cancellationToken)).Count;
            return new PlanStep(target, usage.Reserved - removed, usage.Assigned, 0, removed);
        }

        return new PlanStep(target, usage.Reserved, usage.Assigned, 0, 0);
    }
}
