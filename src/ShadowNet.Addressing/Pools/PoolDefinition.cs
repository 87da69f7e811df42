using System.Net;

namespace ShadowNet.Addressing.Pools;

public enum PoolKind : byte
{
    /// <summary>Reserved blocks that pre-allocations for predicted instances come from.</summary>
    Shadow,

    /// <summary>The fallback for instances nobody predicted.</summary>
    Dynamic,
}

/// <summary>
/// One configured pool: its prefixes, what inside them is never handed out, and who may use it.
/// </summary>
/// <param name="Name">Unique name; leases in the store refer to it.</param>
/// <param name="Kind">Shadow (pre-allocation) or dynamic (fallback).</param>
/// <param name="Prefixes">The blocks of the pool; all of one family.</param>
/// <param name="Exclusions">Addresses and ranges never handed out (gateways, appliances).</param>
/// <param name="Application">When set, only this application's reservations and claims use the pool.</param>
/// <param name="ReuseDelay">How long a released address waits before it can be handed out again. With the
/// system clock it is timed by the OS's coarse monotonic tick, so it holds to within that tick (a few ms).</param>
/// <param name="ExcludeEdges">Leave out each prefix's first address (IPv4 network, IPv6 subnet-router
/// anycast) and, for IPv4, its broadcast address. Ignored for IPv4 /31 and /32 and IPv6 /127 and /128.</param>
public sealed record PoolDefinition(
    string Name,
    PoolKind Kind,
    IReadOnlyList<IPNetwork> Prefixes,
    IReadOnlyList<AddressRange>? Exclusions = null,
    string? Application = null,
    TimeSpan ReuseDelay = default,
    bool ExcludeEdges = true)
{
    public IpFamily Family => Prefixes.Count > 0 && Address.From(Prefixes[0].BaseAddress).IsIPv6 ? IpFamily.IPv6 : IpFamily.IPv4;

    /// <summary>Checks the definition; the message names the pool and the field at fault.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Name))
        {
            throw new PoolConfigurationException("pool name is empty");
        }

        if (Prefixes.Count == 0)
        {
            throw new PoolConfigurationException($"pool '{Name}': prefixes is empty");
        }

        foreach (var prefix in Prefixes)
        {
            if (Address.From(prefix.BaseAddress).Family != Family)
            {
                throw new PoolConfigurationException($"pool '{Name}': prefixes mix IPv4 and IPv6 ({prefix})");
            }
        }

        for (var i = 0; i < Prefixes.Count; i++)
        {
            for (var j = i + 1; j < Prefixes.Count; j++)
            {
                if (Overlaps(AddressRange.Of(Prefixes[i]), AddressRange.Of(Prefixes[j])))
                {
                    throw new PoolConfigurationException($"pool '{Name}': prefixes {Prefixes[i]} and {Prefixes[j]} overlap");
                }
            }
        }

        foreach (var exclusion in Exclusions ?? [])
        {
            if (exclusion.Family != Family)
            {
                throw new PoolConfigurationException($"pool '{Name}': exclusion {exclusion} is not {Family}");
            }
        }

        if (ReuseDelay < TimeSpan.Zero)
        {
            throw new PoolConfigurationException($"pool '{Name}': reuseDelay is negative");
        }

        if (Application is not null && string.IsNullOrWhiteSpace(Application))
        {
            throw new PoolConfigurationException($"pool '{Name}': application is empty");
        }
    }

    /// <summary>
    /// The usable ranges <paramref name="grown"/> adds to this pool when it only adds to it (prefixes, and
    /// exclusions inside those): what a running allocator can take without a restart. Otherwise throws,
    /// naming what else changed.
    /// </summary>
    public IReadOnlyList<AddressRange> AddedBy(PoolDefinition grown)
    {
        ArgumentNullException.ThrowIfNull(grown);
        if (grown.Name != Name)
        {
            throw new PoolConfigurationException($"pool '{Name}' is not pool '{grown.Name}'");
        }

        grown.Validate();
        if (grown.Kind != Kind || grown.Application != Application || grown.ReuseDelay != ReuseDelay || grown.ExcludeEdges != ExcludeEdges || grown.Family != Family)
        {
            throw new PoolConfigurationException($"pool '{Name}': only prefixes can be added while it runs; a change of kind, application, reuse delay or edges takes a restart");
        }

        var before = UsableRanges();
        var after = grown.UsableRanges();
        foreach (var range in before)
        {
            if (!after.Contains(range))
            {
                throw new PoolConfigurationException($"pool '{Name}': addresses {range.First}-{range.Last} are no longer all in it; taking addresses out of a pool takes a restart");
            }
        }

        return [.. after.Where(range => !before.Contains(range))];
    }

    /// <summary>The address ranges that can be handed out: prefixes minus edges minus exclusions, sorted.</summary>
    public IReadOnlyList<AddressRange> UsableRanges()
    {
        var ranges = new List<AddressRange>();
        foreach (var prefix in Prefixes)
        {
            var range = AddressRange.Of(prefix);
            var family = range.Family;
            var maxLength = family == IpFamily.IPv6 ? 128 : 32;
            if (ExcludeEdges && prefix.PrefixLength < maxLength - 1)
            {
                var first = range.First.Value + 1;
                var last = family == IpFamily.IPv4 ? range.Last.Value - 1 : range.Last.Value;
                range = new AddressRange(new Address(first, family), new Address(last, family));
            }

            ranges.Add(range);
        }

        foreach (var exclusion in Exclusions ?? [])
        {
            ranges = Subtract(ranges, exclusion);
        }

        ranges.Sort((a, b) => a.First.CompareTo(b.First));
        return ranges;
    }

    internal static bool Overlaps(AddressRange a, AddressRange b) =>
        a.Family == b.Family && a.First.Value <= b.Last.Value && b.First.Value <= a.Last.Value;

    private static List<AddressRange> Subtract(List<AddressRange> ranges, AddressRange cut)
    {
        var result = new List<AddressRange>(ranges.Count + 1);
        foreach (var range in ranges)
        {
            if (!Overlaps(range, cut))
            {
                result.Add(range);
                continue;
            }

            if (cut.First.Value > range.First.Value)
            {
                result.Add(range with { Last = new Address(cut.First.Value - 1, range.Family) });
            }

            if (cut.Last.Value < range.Last.Value)
            {
                result.Add(range with { First = new Address(cut.Last.Value + 1, range.Family) });
            }
        }

        return result;
    }
}

/// <summary>A pool definition that cannot work; the message names the pool and the field.</summary>
public sealed class PoolConfigurationException(string message) : Exception(message);
