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
using ShadowNet.Controller.State;
using ShadowNet.Controller.Telemetry;
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

    /// <summary>Staging mode of each pool by name; pools not named here are <see cref="StagingMode.Held"/>.</summary>
    public IReadOnlyDictionary<string, StagingMode> Staging { get; init; } = new Dictionary<string, StagingMode>();

    /// <summary>The community that marks a staged route as not for forwarding (<see cref="StagingMode.Community"/>).</summary>
    public ShadowCommunity? ShadowCommunity { get; init; }

    /// <summary>
    /// Fixed warm pools (AWS VPC CNI style): this many addresses kept reserved per application and family,
    /// topped up at start and after every hit. The baseline the forecaster has to beat.
    /// </summary>
    public IReadOnlyList<WarmTarget> Warm { get; init; } = [];
}

/// <summary>How a pre-allocated address's route waits for its instance (DESIGN.md, "Route staging").</summary>
public enum StagingMode
{
    /// <summary>Not sent: the reservation is the staged route; activation sends one UPDATE.</summary>
    Held,

    /// <summary>Sent at reservation with the shadow community, which router policy keeps out of forwarding;
    /// activation re-sends it without (an implicit replace).</summary>
    Community,
}

/// <summary>The shadow community: a standard (RFC 1997) or a large (RFC 8092) one.</summary>
public readonly record struct ShadowCommunity(uint? Standard, LargeCommunity? Large)
{
    public static bool TryParse(string? text, out ShadowCommunity community)
    {
        community = default;
        var parts = text?.Split(':') ?? [];
        if (parts.Length == 3 && LargeCommunity.TryParse(text!, out var large))
        {
            community = new ShadowCommunity(null, large);
            return true;
        }

        if (parts.Length == 2 && ushort.TryParse(parts[0], out var high) && ushort.TryParse(parts[1], out var low))
        {
            community = new ShadowCommunity(((uint)high << 16) | low, null);
            return true;
        }

        return false;
    }

    public override string ToString() => Large?.ToString() ?? $"{Standard >> 16}:{Standard & 0xFFFF}";
}

/// <summary>Keep <paramref name="Count"/> addresses of <paramref name="Family"/> reserved for <paramref name="Application"/>.</summary>
public sealed record WarmTarget(string Application, IpFamily Family, int Count);

/// <summary>
/// The Active Route Manager: a create claims the instance's address (a pre-allocated one when there is,
/// else a dynamic one) and announces its host route with the hypervisor as next hop; a delete withdraws
/// the route and releases the address. Reservations made through it are staged per pool: held (nothing
/// sent until the create) or sent with the shadow community (DESIGN.md, "Route staging").
/// </summary>
/// <remarks>
/// Routes follow the lease table: every lease change, in the order the allocator makes it, becomes an
/// announcement (assigned), a staged route (reserved, community staging) or a withdrawal (released,
/// given back), on the allocator's applier thread as soon as the change is made in memory. So the
/// fsync is not on a route's path (the reply still waits for it), and no later change can be overtaken
/// by an earlier one's route (an address released and claimed again in quick succession). A crash
/// before the commit leaves at the peer a route for a create that was never acknowledged: the restart
/// re-announces only stored instances, and the peer drops the rest (session reset, or End-of-RIB after
/// a graceful restart). A commit that fails withdraws the routes of its creates; the allocator stops,
/// and a restart re-announces what is stored. An export guard refuses to announce any prefix outside
/// the configured pools.
/// </remarks>
public sealed class ActiveRouteManager : IHookHandler
{
    public const string MeterName = "ShadowNet.Routing";
    private static readonly Meter Meter = new(MeterName);

    private static readonly Histogram<double> Activation = Meter.CreateHistogram("shadownet.route.activation.duration", "s",
        "From a create reaching the route manager to its claim being durable and its reply ready (its route went to the speaker when the claim was made, before that)",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1] });

    private readonly DurableAllocator _allocator;
    private readonly BgpSpeaker _speaker;
    // Replaced whole when a pool grows (a reload); the readers take the array as it is.
    private AddressRange[] _exportable;
    private AddressRange[] _communityStaged;
    // Pools whose reservations are sent with the shadow community, by name: those configured, and those
    // a reload added (used when a pool grows; reloads come one at a time).
    private readonly HashSet<string> _communityPools;
    private readonly ConcurrentDictionary<(IPAddress NextHop, bool Staged), RouteAttributes> _attributes = new();
    private readonly HashSet<(string Application, IpFamily Family)> _warm;
    private readonly IMetricWindowSource? _windows;
    private readonly MissLog? _missLog;

    private static readonly Action s_releaseSends = BgpSpeaker.ReleaseSends;

    /// <summary>
    /// The hook receiver's batch is queued whole; when the server lets it finish there (ordinary rates),
    /// it is applied on the receiving thread (see <see cref="DurableAllocator.BeginBatch"/>) and its routes
    /// are written to the idle peers from there too, before the committer is woken for it; else the
    /// applier thread is woken once for it.
    /// </summary>
    public void BatchStarting()
    {
        BgpSpeaker.HoldSends();
        _allocator.BeginBatch();
    }

    public void BatchEnded(bool finishHere)
    {
        try
        {
            _allocator.EndBatch(applyHere: finishHere, beforeCommit: s_releaseSends);
        }
        finally
        {
            BgpSpeaker.ReleaseSends(); // after a failure before EndBatch's own call; else nothing is held
        }
    }

    /// <param name="windows">Recent metrics per application, recorded with each miss.</param>
    /// <param name="missLog">Where misses are also written as JSON lines for retraining.</param>
    public ActiveRouteManager(DurableAllocator allocator, BgpSpeaker speaker, IEnumerable<PoolDefinition> pools, RouteManagerOptions options,
        IMetricWindowSource? windows = null, MissLog? missLog = null)
    {
        _allocator = allocator;
        _windows = windows;
        _missLog = missLog;
        _speaker = speaker;
        Options = options;
        var definitions = pools.ToList();
        _exportable = [.. definitions.SelectMany(p => p.UsableRanges())];
        _communityPools = [.. options.Staging.Where(e => e.Value == StagingMode.Community).Select(e => e.Key)];
        _communityStaged = [.. definitions.Where(p => _communityPools.Contains(p.Name)).SelectMany(p => p.UsableRanges())];
        if (_communityStaged.Length > 0 && options.ShadowCommunity is null)
        {
            throw new ArgumentException("community staging needs a shadow community", nameof(options));
        }

        _warm = [.. options.Warm.Select(w => (w.Application, w.Family))];
        allocator.LeasesChanged += FollowLeases;
        allocator.CommitFailed += WithdrawUncommitted;
        // The applier's routes go out from its own thread at the end of each run it applies, as a batch
        // applied on the receiving thread does (BatchStarting): no writer wake-up per run (bench/RESULTS.md, stop 24).
        allocator.ApplierBatchStarting += BgpSpeaker.HoldSends;
        allocator.ApplierBatchEnded += BgpSpeaker.ReleaseSends;
    }

    public RouteManagerOptions Options { get; }

    /// <summary>Creates and deletes as they happen, for watchers.</summary>
    public EventFeed Events { get; } = new();

    /// <summary>Reserves what the warm targets lack; returns how many addresses were reserved.</summary>
    public async Task<int> TopUpWarmAsync(CancellationToken cancellationToken = default)
    {
        var reserved = 0;
        foreach (var target in Options.Warm)
        {
            var usage = await _allocator.ReadAsync(a => a.GetUsage(target.Application, target.Family), cancellationToken);
            if (usage.Reserved < target.Count)
            {
                reserved += (await ReserveAsync(target.Application, target.Family, target.Count - usage.Reserved, cancellationToken)).Count;
            }
        }

        return reserved;
    }

    /// <summary>Pre-allocates addresses for an application (their routes are staged); returns the addresses.</summary>
    public async Task<IReadOnlyList<Address>> ReserveAsync(string application, IpFamily family, int count, CancellationToken cancellationToken = default) =>
        await _allocator.ReserveAddressesAsync(application, family, count, cancellationToken);

    /// <summary>
    /// Tells the allocator how many reservations the forecast wants for an application, so that addresses
    /// it releases come back to it after their reuse delay (their routes are staged again); returns the
    /// application's usage after that.
    /// </summary>
    public async Task<ApplicationUsage> SetDemandAsync(string application, IpFamily family, int reservations, CancellationToken cancellationToken = default) =>
        await _allocator.SetDemandAsync(application, family, reservations, cancellationToken);

    /// <summary>Gives back reservations beyond <paramref name="keep"/> (their staged routes are withdrawn).</summary>
    public async Task<IReadOnlyList<Address>> ShrinkAsync(string application, IpFamily family, int keep, CancellationToken cancellationToken = default) =>
        await _allocator.ShrinkAsync(application, family, keep, cancellationToken);

    /// <summary>
    /// At start, before serving hooks: announces the route of every live instance in the store and stages
    /// the routes of its reservations. Returns the number of live routes announced.
    /// </summary>
    public async Task<int> RestoreAsync(CancellationToken cancellationToken = default)
    {
        var leases = await _allocator.ReadAsync(a => a.Leases.Where(l => l.State is LeaseState.Assigned or LeaseState.Reserved).ToList(), cancellationToken);
        var announced = 0;
        foreach (var lease in leases)
        {
            if (lease.State == LeaseState.Reserved)
            {
                Stage(lease.Address);
            }
            else if (Announce(lease.Address, lease.Host))
            {
                announced++;
            }
        }

        return announced;
    }

    /// <summary>
    /// A create: claims (hit or miss), replies when the claim is stored; its route follows the lease
    /// (FollowLeases). The name travels as characters in a pooled buffer: no string per create.
    /// </summary>
    public ValueTask<HookOutcome> CreateAsync(ReadOnlySpan<char> instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken)
    {
        if (host is null && !HasDefaultNextHop(family))
        {
            // Its route would have no next hop: refused before it takes an address it could not use.
            return new ValueTask<HookOutcome>(new HookOutcome(HookStatus.Invalid, null));
        }

        var started = Stopwatch.GetTimestamp();
        var name = PooledName.Rent(instance);
        ValueTask<ClaimResult> claim;
        try
        {
            claim = _allocator.ClaimAsync(name, application, family, host, refillOnHit: _warm.Contains((application, family)), cancellationToken);
        }
        catch (Exception)
        {
            name.Return();
            return new ValueTask<HookOutcome>(new HookOutcome(HookStatus.Unavailable, null));
        }

        return PooledOutcome<ClaimResult, (ActiveRouteManager Manager, PooledName Instance, string Application, IpFamily Family, Address? Host, long Started)>.When(
            claim, (this, name, application, family, host, started), static (claim, x) => x.Manager.Created(claim, x.Instance, x.Application, x.Family, x.Host, x.Started));
    }

    /// <summary>A delete: releases the address (its route is withdrawn as the lease goes), replies when that is stored.</summary>
    public ValueTask<HookOutcome> DeleteAsync(ReadOnlySpan<char> instance, string application, IpFamily family, CancellationToken cancellationToken)
    {
        var name = PooledName.Rent(instance);
        ValueTask<Lease?> release;
        try
        {
            release = _allocator.ReleaseAsync(name, family, cancellationToken);
        }
        catch (Exception)
        {
            name.Return();
            return new ValueTask<HookOutcome>(new HookOutcome(HookStatus.Unavailable, null));
        }

        return PooledOutcome<Lease?, (ActiveRouteManager Manager, PooledName Instance, string Application)>.When(
            release, (this, name, application), static (release, x) => x.Manager.Deleted(release, x.Instance, x.Application));
    }

    /// <summary>Reads the stored claim, then gives the name buffer back (the operation is done with it).</summary>
    private HookOutcome Created(ValueTask<ClaimResult> stored, PooledName name, string application, IpFamily family, Address? host, long started)
    {
        try
        {
            return Created(stored, name.Chars, application, family, host, started);
        }
        finally
        {
            name.Return();
        }
    }

    private HookOutcome Created(ValueTask<ClaimResult> stored, ReadOnlySpan<char> instance, string application, IpFamily family, Address? host, long started)
    {
        ClaimResult claim;
        try
        {
            claim = stored.GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            return new HookOutcome(HookStatus.Unavailable, null);
        }

        switch (claim.Status)
        {
            case ClaimStatus.Hit or ClaimStatus.Miss or ClaimStatus.Existing:
                // Announced already (FollowLeases), unless the export guard or a missing next hop refused it.
                if (!IsExportable(claim.Address) || (host is null && DefaultNextHop(claim.Address) is null))
                {
                    return new HookOutcome(HookStatus.Invalid, claim.Address);
                }

                if (claim.Status != ClaimStatus.Existing && Events.Watchers > 0)
                {
                    Events.Publish(new ControllerEvent(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), ControllerEventKind.Create,
                        claim.Preallocated, instance.ToString(), application, claim.Address, host));
                }

                if (claim.Status == ClaimStatus.Miss)
                {
                    _ = RecordMissAsync(new MissRecord(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), application, instance.ToString(), claim.Address, host,
                        _windows?.WindowJson(application)));
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

    private HookOutcome Deleted(ValueTask<Lease?> stored, PooledName name, string application)
    {
        try
        {
            return Deleted(stored, name.Chars, application);
        }
        finally
        {
            name.Return();
        }
    }

    private HookOutcome Deleted(ValueTask<Lease?> stored, ReadOnlySpan<char> instance, string application)
    {
        Lease? released;
        try
        {
            released = stored.GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            return new HookOutcome(HookStatus.Unavailable, null);
        }

        if (released is not { } lease)
        {
            return new HookOutcome(HookStatus.NotFound, null);
        }

        // Withdrawn already (FollowLeases).
        if (Events.Watchers > 0)
        {
            Events.Publish(new ControllerEvent(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), ControllerEventKind.Delete,
                lease.Preallocated, instance.ToString(), lease.Application ?? application, lease.Address, lease.Host));
        }

        return new HookOutcome(HookStatus.Deleted, lease.Address);
    }

    /// <summary>On the allocator's applier thread, in the order the changes were made (see the class remarks).</summary>
    private void FollowLeases(ReadOnlySpan<LeaseChange> changes)
    {
        foreach (var change in changes)
        {
            var lease = change.Lease;
            if (!change.Removed && lease.State == LeaseState.Assigned)
            {
                Announce(lease.Address, lease.Host);
            }
            else if (!change.Removed && lease.State == LeaseState.Reserved)
            {
                Stage(lease.Address);
            }
            else
            {
                // Released, quarantined or given back: nothing may forward to it (a no-op when nothing was sent).
                _speaker.Withdraw(HostRoute(lease.Address));
            }
        }
    }

    /// <summary>A group failed to commit: its creates were not acknowledged, so their early routes go.</summary>
    private void WithdrawUncommitted(ReadOnlySpan<LeaseChange> changes)
    {
        foreach (var change in changes)
        {
            if (!change.Removed && change.Lease.State == LeaseState.Assigned)
            {
                _speaker.Withdraw(HostRoute(change.Lease.Address));
            }
        }
    }

    /// <summary>Misses are refinement data: the reply does not wait for them to be stored or logged.</summary>
    private async Task RecordMissAsync(MissRecord miss)
    {
        _missLog?.Add(miss);
        try
        {
            await _allocator.RecordMissAsync(miss);
        }
        catch (Exception)
        {
            // The store has failed: the allocator has stopped and reports that itself.
        }
    }

    /// <summary>
    /// Adds prefixes to a pool while serving (<see cref="PoolDefinition.AddedBy"/>; a configuration reload).
    /// The export guard takes the new ranges before the allocator does, so that no address from them is
    /// handed out before its route may be sent. Returns the addresses added; throws, changing nothing, when
    /// <paramref name="grown"/> does more than add.
    /// </summary>
    public async Task<ulong> GrowPoolAsync(PoolDefinition grown, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(grown);
        var current = await _allocator.ReadAsync(a => a.Pools.FirstOrDefault(p => p.Name == grown.Name), cancellationToken)
            ?? throw new PoolConfigurationException($"pool '{grown.Name}' is not one of this allocator's; a new pool takes a restart");
        var added = current.AddedBy(grown);
        if (added.Count == 0)
        {
            return 0;
        }

        Widen(added, _communityPools.Contains(grown.Name));
        return await _allocator.GrowPoolAsync(grown, cancellationToken);
    }

    /// <summary>
    /// Adds a pool while serving (a configuration reload), staged as <paramref name="staging"/> says. As
    /// for growth, the export guard takes its ranges before the allocator hands any of them out.
    /// </summary>
    public async Task AddPoolAsync(PoolDefinition definition, StagingMode staging, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        if (staging == StagingMode.Community && Options.ShadowCommunity is null)
        {
            throw new PoolConfigurationException($"pool '{definition.Name}': community staging needs routes:shadowCommunity, set at start-up");
        }

        if (staging == StagingMode.Community)
        {
            _communityPools.Add(definition.Name);
        }

        Widen(definition.UsableRanges(), staging == StagingMode.Community);
        await _allocator.AddPoolAsync(definition, cancellationToken);
    }

    /// <summary>The export guard (and, for a community-staged pool, the staging ranges) take <paramref name="ranges"/> too.</summary>
    private void Widen(IReadOnlyList<AddressRange> ranges, bool communityStaged)
    {
        Volatile.Write(ref _exportable, [.. _exportable, .. ranges]);
        if (communityStaged)
        {
            Volatile.Write(ref _communityStaged, [.. _communityStaged, .. ranges]);
        }
    }

    /// <summary>True when <paramref name="address"/> may be announced: inside a configured pool.</summary>
    public bool IsExportable(Address address)
    {
        foreach (var range in Volatile.Read(ref _exportable))
        {
            if (range.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>True when reservations of the pool holding <paramref name="address"/> are sent with the shadow community.</summary>
    public bool IsCommunityStaged(Address address)
    {
        foreach (var range in Volatile.Read(ref _communityStaged))
        {
            if (range.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    private void Stage(Address address)
    {
        if (IsCommunityStaged(address))
        {
            Announce(address, null, staged: true);
        }
    }

    private IPAddress? DefaultNextHop(Address address) => address.IsIPv6 ? Options.DefaultNextHopV6 : Options.DefaultNextHopV4;

    /// <summary>Whether a create of <paramref name="family"/> without a host address gets a next hop (routes:defaultNextHopV4/V6).</summary>
    public bool HasDefaultNextHop(IpFamily family) => (family == IpFamily.IPv6 ? Options.DefaultNextHopV6 : Options.DefaultNextHopV4) is not null;

    private bool Announce(Address address, Address? host, bool staged = false)
    {
        var nextHop = host?.ToIPAddress() ?? DefaultNextHop(address);
        if (nextHop is null || !IsExportable(address))
        {
            return false;
        }

        var attributes = _attributes.GetOrAdd((nextHop, staged), static (key, options) => new RouteAttributes
        {
            NextHop = key.NextHop,
            Communities = key.Staged && options.ShadowCommunity?.Standard is { } standard ? [.. options.Communities, standard] : options.Communities,
            LargeCommunities = key.Staged && options.ShadowCommunity?.Large is { } large ? [.. options.LargeCommunities, large] : options.LargeCommunities,
        }, Options);
        _speaker.Announce(HostRoute(address), attributes);
        return true;
    }

    private static RoutePrefix HostRoute(Address address) =>
        address.IsIPv6 ? RoutePrefix.IPv6(address.Value, 128) : RoutePrefix.IPv4((uint)address.Value, 32);
}
