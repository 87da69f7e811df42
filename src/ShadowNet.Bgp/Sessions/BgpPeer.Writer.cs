using System.Buffers;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

public sealed partial class BgpPeer
{
    private const int LookupChunk = 4096;

    /// <summary>
    /// The single writer of a session: keepalives, the full table then End-of-RIB, every later change,
    /// and refreshes. It flushes every <see cref="BgpSpeakerOptions.FlushThreshold"/> octets, so a peer
    /// that reads slowly holds this loop in FlushAsync (TCP backpressure) while changes keep coalescing
    /// in the Adj-RIB-Out, and no other peer waits.
    /// </summary>
    private async Task WriterLoopAsync(WriterState state, CancellationToken ct)
    {
        var output = state.Connection.Output;
        var session = state.Session;
        var endOfRibSent = false;
        var prefixes = ArrayPool<RoutePrefix>.Shared.Rent(LookupChunk);
        var attributes = ArrayPool<RouteAttributes?>.Shared.Rent(LookupChunk);
        var groups = new Dictionary<(RouteAttributes, bool), List<RoutePrefix>>();
        var withdrawV4 = new List<RoutePrefix>();
        var withdrawV6 = new List<RoutePrefix>();
        try
        {
            while (await state.AdjRibOut.WaitAsync(ct).ConfigureAwait(false))
            {
                state.AdjRibOut.ConsumeSignal();
                if (state.KeepaliveDue)
                {
                    state.KeepaliveDue = false;
                    BgpFraming.WriteKeepalive(output);
                    Volatile.Write(ref state.LastSent, _speaker.TimeProvider.GetTimestamp());
                }

                var refresh = state.RefreshRequested;
                if (refresh)
                {
                    state.RefreshRequested = false;
                    if (session.EnhancedRouteRefresh)
                        foreach (var f in session.Families)
                            new RouteRefreshMessage(f, RouteRefreshMessage.BeginningOfRouteRefresh).WriteTo(output);
                    _speaker.LocRib.MarkAllDirty(state.AdjRibOut);
                }

                var dirty = state.AdjRibOut.TakeDirty();
                try
                {
                    var n = 0;
                    foreach (var p in dirty)
                    {
                        prefixes[n++] = p;
                        if (n == LookupChunk)
                        {
                            await SendChunkAsync(state, prefixes.AsMemory(0, n), attributes, groups, withdrawV4, withdrawV6, ct).ConfigureAwait(false);
                            n = 0;
                        }
                    }
                    if (n > 0)
                        await SendChunkAsync(state, prefixes.AsMemory(0, n), attributes, groups, withdrawV4, withdrawV6, ct).ConfigureAwait(false);
                }
                finally
                {
                    state.AdjRibOut.Recycle(dirty);
                }

                if (!endOfRibSent)
                {
                    // RFC 4724 section 2: the initial table is complete.
                    foreach (var f in session.Families)
                        UpdateEncoder.WriteEndOfRib(output, f);
                    endOfRibSent = true;
                }
                if (refresh && session.EnhancedRouteRefresh)
                    foreach (var f in session.Families)
                        new RouteRefreshMessage(f, RouteRefreshMessage.EndOfRouteRefresh).WriteTo(output);

                if (output.UnflushedBytes > 0)
                {
                    await output.FlushAsync(ct).ConfigureAwait(false);
                    Volatile.Write(ref state.LastSent, _speaker.TimeProvider.GetTimestamp());
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A session that can no longer write is dead: close it instead of reading on silently.
            LastError = $"writer failed: {e.Message}";
            await state.Connection.Closing.CancelAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            ArrayPool<RoutePrefix>.Shared.Return(prefixes);
            ArrayPool<RouteAttributes?>.Shared.Return(attributes, clearArray: true);
        }
    }

    private async ValueTask SendChunkAsync(
        WriterState state,
        ReadOnlyMemory<RoutePrefix> chunk,
        RouteAttributes?[] attributes,
        Dictionary<(RouteAttributes, bool), List<RoutePrefix>> groups,
        List<RoutePrefix> withdrawV4,
        List<RoutePrefix> withdrawV6,
        CancellationToken ct)
    {
        var session = state.Session;
        var output = state.Connection.Output;
        _speaker.LocRib.Lookup(chunk.Span, attributes.AsSpan(0, chunk.Length));

        var span = chunk.Span;
        for (var i = 0; i < span.Length; i++)
        {
            var p = span[i];
            var family = p.Family;
            if (!session.Families.Contains(family))
                continue;
            var a = attributes[i];
            if (a is null)
            {
                (p.IsIPv6 ? withdrawV6 : withdrawV4).Add(p);
                continue;
            }
            var key = (a, p.IsIPv6);
            if (!groups.TryGetValue(key, out var list))
                groups[key] = list = [];
            list.Add(p);
        }

        var max = session.MaxMessageLength;
        var sent = 0L;
        var updates = 0L;
        foreach (var w in (ReadOnlySpan<List<RoutePrefix>>)[withdrawV4, withdrawV6])
        {
            var rest = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(w);
            while (!rest.IsEmpty)
            {
                rest = rest[UpdateEncoder.WriteWithdraw(output, rest, max)..];
                updates++;
            }
            w.Clear();
        }

        foreach (var ((attrs, ipv6), list) in groups)
        {
            if (list.Count == 0)
                continue;
            if (!state.Encoded.TryGetValue((attrs, ipv6), out var encoded))
            {
                if (state.Encoded.Count > 4096)
                    state.Encoded.Clear();
                try
                {
                    encoded = UpdateEncoder.Encode(attrs, ipv6 ? AddressFamily.IPv6Unicast : AddressFamily.IPv4Unicast, state.Export);
                }
                catch (InvalidOperationException e)
                {
                    // A route this session cannot carry (for example an IPv6 next hop without RFC 8950): skip it, loudly.
                    Log.RouteNotExportable(_logger, Options.DisplayName, list.Count, e.Message);
                    list.Clear();
                    continue;
                }
                state.Encoded[(attrs, ipv6)] = encoded;
            }
            var offset = 0;
            while (offset < list.Count)
            {
                var taken = UpdateEncoder.WriteAnnounce(output, encoded, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list)[offset..], max);
                if (taken == 0)
                {
                    Log.RouteNotExportable(_logger, Options.DisplayName, list.Count - offset, "attributes too large for one UPDATE");
                    break;
                }
                offset += taken;
                sent += taken;
                updates++;
                if (output.UnflushedBytes >= _speaker.Options.FlushThreshold)
                {
                    await output.FlushAsync(ct).ConfigureAwait(false);
                    Volatile.Write(ref state.LastSent, _speaker.TimeProvider.GetTimestamp());
                    if (state.KeepaliveDue)
                    {
                        state.KeepaliveDue = false;
                        BgpFraming.WriteKeepalive(output);
                    }
                }
            }
            list.Clear();
        }
        Interlocked.Add(ref _prefixesSent, sent);
        Interlocked.Add(ref _updatesSent, updates);
    }
}
