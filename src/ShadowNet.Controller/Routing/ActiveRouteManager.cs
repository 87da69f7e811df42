using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;
using ShadowNet.Controller.Allocation;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Routing;

public sealed record RouteManagerOptions
{
    /// <summary>Next hop of IPv4 instance routes when the create names no hypervisor address.</summary>
    public IPAddress? DefaultNextHopV4 { get; init; }

    /// <summary>Next hop of IPv6 instance routes when the create names no hypervisor address.</summary>
    public IPAddress? DefaultNextHopV6 { get; init; }

    /// <summary>Communities put on every active instance route.</summary>
    public IReadOnlyList<uint> Communities { get; init; } = [];

    public IReadOnlyList<LargeCommunity> LargeCommunities { get; init; } = [];

    /// <summary>
    /// Fixed warm pools (AWS VPC CNI style): this many addresses kept reserved per application and family,
    /// topped up at start and after every hit. The baseline the forecaster has to beat.
    /// </summary>
    public IReadOnlyList<WarmTarget> Warm { get; init; } = [];
}

/// <summary>Keep <paramref name="Count"/> addresses of <paramref name="Family"/> reserved for <paramref name="Application"/>.</summary>
public sealed record WarmTarget(string Application, IpFamily Family, int Count);

/// <summary>
/// The Active Route Manager: a create claims the instance's address (a pre-allocated one when there is,
/// else a dynamic one) and announces its host route with the hypervisor as next hop; a delete withdraws
/// the route and releases the address. Reservations stay held: nothing is announced for them until
/// their instance is created (the <c>held</c> staging mode of DESIGN.md).
/// </summary>
/// <remarks>
/// The route is announced after the claim is durable, so a crash between the two leaves an address
/// with no route, which <see cref="RestoreAsync"/> repairs at start; never a route with no address.
/// An export guard refuses to announce any prefix outside the configured pools.
/// </remarks>
public sealed class ActiveRouteManager : IHookHandler
{
    public const string MeterName = "ShadowNet.Routing";
    private static readonly Meter Meter = new(MeterName);

    private static readonly Histogram<double> Activation = Meter.CreateHistogram("shadownet.route.activation.duration", "s",
        "From a create reaching the route manager to its host route being in the speaker's RIB (durable claim included)",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1] });

    private readonly DurableAllocator _allocator;
    private readonly BgpSpeaker _speaker;
    private readonly RouteManagerOptions _options;
    private readonly AddressRange[] _exportable;
    private readonly ConcurrentDictionary<IPAddress, RouteAttributes> _attributesByNextHop = new();
    private readonly HashSet<(string Application, IpFamily Family)> _warm;

    public ActiveRouteManager(DurableAllocator allocator, BgpSpeaker speaker, IEnumerable<PoolDefinition> pools, RouteManagerOptions options)
    {
        _allocator = allocator;
        _speaker = speaker;
        _options = options;
        _exportable = [.. pools.SelectMany(p => p.UsableRanges())];
        _warm = [.. options.Warm.Select(w => (w.Application, w.Family))];
    }

    /// <summary>Reserves what the warm targets lack; returns how many addresses were reserved.</summary>
    public async Task<int> TopUpWarmAsync(CancellationToken cancellationToken = default)
    {
        var reserved = 0;
        foreach (var target in _options.Warm)
        {
            var usage = await _allocator.ReadAsync(a => a.GetUsage(target.Application, target.Family), cancellationToken);
            if (usage.Reserved < target.Count)
            {
                reserved += (await _allocator.ReserveAsync(target.Application, target.Family, target.Count - usage.Reserved, cancellationToken)).Count;
            }
        }

        return reserved;
    }

    /// <summary>Announces the route of every live instance in the store (at start, before serving hooks).</summary>
    public async Task<int> RestoreAsync(CancellationToken cancellationToken = default)
    {
        var live = await _allocator.ReadAsync(a => a.Leases.Where(l => l.State == LeaseState.Assigned).ToList(), cancellationToken);
        var announced = 0;
        foreach (var lease in live)
        {
            if (Announce(lease.Address, lease.Host))
            {
                announced++;
            }
        }

        return announced;
    }

    public async ValueTask<HookOutcome> CreateAsync(string instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        ClaimResult claim;
        try
        {
            claim = await _allocator.ClaimAsync(instance, application, family, host, cancellationToken);
        }
        catch (Exception)
        {
            return new HookOutcome(HookStatus.Unavailable, null);
        }

        switch (claim.Status)
        {
            case ClaimStatus.Hit or ClaimStatus.Miss or ClaimStatus.Existing:
                // A retried create announces again: harmless (the latest state wins in Adj-RIB-Out).
                if (!Announce(claim.Address, host))
                {
                    return new HookOutcome(HookStatus.Invalid, claim.Address);
                }

                if (claim.Status == ClaimStatus.Hit && _warm.Contains((application, family)))
                {
                    // Replace the reservation just taken; the reply does not wait for it.
                    _ = _allocator.ReserveAsync(application, family, 1, CancellationToken.None).AsTask();
                }

                Activation.Record(Stopwatch.GetElapsedTime(started).TotalSeconds,
                    new KeyValuePair<string, object?>("outcome", claim.Preallocated ? "hit" : "miss"));
                return new HookOutcome(claim.Preallocated ? HookStatus.Hit : HookStatus.Miss, claim.Address);
            case ClaimStatus.Conflict:
                return new HookOutcome(HookStatus.Conflict, null);
            case ClaimStatus.Exhausted:
                return new HookOutcome(HookStatus.Exhausted, null);
            default:
                return new HookOutcome(HookStatus.Invalid, null);
        }
    }

    public async ValueTask<HookOutcome> DeleteAsync(string instance, string application, IpFamily family, CancellationToken cancellationToken)
    {
        Lease? released;
        try
        {
            released = await _allocator.ReleaseAsync(instance, family, cancellationToken);
        }
        catch (Exception)
        {
            return new HookOutcome(HookStatus.Unavailable, null);
        }

        if (released is not { } lease)
        {
            return new HookOutcome(HookStatus.NotFound, null);
        }

        _speaker.Withdraw(HostRoute(lease.Address));
        return new HookOutcome(HookStatus.Deleted, lease.Address);
    }

    /// <summary>True when <paramref name="address"/> may be announced: inside a configured pool.</summary>
    public bool IsExportable(Address address)
    {
        foreach (var range in _exportable)
        {
            if (range.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    private bool Announce(Address address, Address? host)
    {
        var nextHop = host?.ToIPAddress() ?? (address.IsIPv6 ? _options.DefaultNextHopV6 : _options.DefaultNextHopV4);
        if (nextHop is null || !IsExportable(address))
        {
            return false;
        }

        var attributes = _attributesByNextHop.GetOrAdd(nextHop, static (hop, options) => new RouteAttributes
        {
            NextHop = hop,
            Communities = options.Communities,
            LargeCommunities = options.LargeCommunities,
        }, _options);
        _speaker.Announce(HostRoute(address), attributes);
        return true;
    }

    private static RoutePrefix HostRoute(Address address) =>
        address.IsIPv6 ? RoutePrefix.IPv6(address.Value, 128) : RoutePrefix.IPv4((uint)address.Value, 32);
}
