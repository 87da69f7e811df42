using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

public sealed partial class BgpPeer
{
    private const int LookupChunk = 4096;

    /// <summary>
    /// The session's writer: keepalives, the full table then End-of-RIB, every later change, and
    /// refreshes. It flushes every <see cref="BgpSpeakerOptions.FlushThreshold"/> octets, so a peer that
    /// reads slowly holds this loop in FlushAsync (TCP backpressure) while changes keep coalescing in the
    /// Adj-RIB-Out, and no other peer waits. A thread that changed routes may write them itself while
    /// this loop is idle (<see cref="TrySendNow"/>); <see cref="WriterState.Gate"/> keeps one writer at a time.
    /// </summary>
    private async Task WriterLoopAsync(WriterState state, CancellationToken ct)
    {
        var output = state.Connection.Output;
        var session = state.Session;
        try
        {
            while (await state.AdjRibOut.WaitAsync(ct).ConfigureAwait(false))
            {
                state.AdjRibOut.ConsumeSignal();
                await state.Gate.WaitAsync(ct).ConfigureAwait(false);
                try
                {
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

                    await SendDirtyAsync(state, ct).ConfigureAwait(false);

                    if (!state.EndOfRibSent)
                    {
                        // RFC 4724 section 2: the initial table is complete.
                        foreach (var f in session.Families)
                            UpdateEncoder.WriteEndOfRib(output, f);
                        state.EndOfRibSent = true;
                    }
                    if (refresh && session.EnhancedRouteRefresh)
                        foreach (var f in session.Families)
                            new RouteRefreshMessage(f, RouteRefreshMessage.EndOfRouteRefresh).WriteTo(output);

                    await FlushAsync(state, ct).ConfigureAwait(false);
                }
                finally
                {
                    state.Gate.Release();
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A session that can no longer write is dead: close it instead of reading on silently.
            await WriterFailedAsync(state, e).ConfigureAwait(false);
            throw;
        }
        finally
        {
            state.AdjRibOut.SendNow = null;
        }
    }

    /// <summary>
    /// Writes this peer's pending changes on the calling thread if no one is writing to it now and the
    /// initial table is out; false leaves them to the writer loop. The hook receiver calls this at the end
    /// of a batch it applied itself, so a route needs no wake-up of another thread (bench/RESULTS.md, stop 20).
    /// A flush the socket cannot take at once finishes on the thread pool, still holding the gate.
    /// </summary>
    private bool TrySendNow(WriterState state, CancellationToken ct)
    {
        if (!state.EndOfRibSent || !state.Gate.Wait(0, CancellationToken.None))
            return false;
        if (ct.IsCancellationRequested)
        {
            state.Gate.Release();
            return false;
        }

        var sending = SendNowAsync(state, ct);
        if (!sending.IsCompleted)
            _ = sending.AsTask(); // finishes, releases the gate and records any failure on its own
        return true;
    }

    private async ValueTask SendNowAsync(WriterState state, CancellationToken ct)
    {
        try
        {
            await SendDirtyAsync(state, ct).ConfigureAwait(false);
            await FlushAsync(state, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            await WriterFailedAsync(state, e).ConfigureAwait(false);
        }
        finally
        {
            state.Gate.Release();
        }
    }

    private async ValueTask WriterFailedAsync(WriterState state, Exception e)
    {
        LastError = $"writer failed: {e.Message}";
        await state.Connection.Closing.CancelAsync().ConfigureAwait(false);
    }

    private async ValueTask FlushAsync(WriterState state, CancellationToken ct)
    {
        if (state.Connection.Output.UnflushedBytes > 0)
        {
            await state.Connection.Output.FlushAsync(ct).ConfigureAwait(false);
            Volatile.Write(ref state.LastSent, _speaker.TimeProvider.GetTimestamp());
        }
    }

    /// <summary>Sends what the Adj-RIB-Out holds as changed (the caller holds the gate).</summary>
    private async ValueTask SendDirtyAsync(WriterState state, CancellationToken ct)
    {
        var dirty = state.AdjRibOut.TakeDirty();
        var prefixes = state.Prefixes;
        try
        {
            var n = 0;
            foreach (var p in dirty)
            {
                prefixes[n++] = p;
                if (n == LookupChunk)
                {
                    await SendChunkAsync(state, prefixes.AsMemory(0, n), ct).ConfigureAwait(false);
                    n = 0;
                }
            }
            if (n > 0)
                await SendChunkAsync(state, prefixes.AsMemory(0, n), ct).ConfigureAwait(false);
        }
        finally
        {
            state.AdjRibOut.Recycle(dirty);
        }
    }

    private async ValueTask SendChunkAsync(WriterState state, ReadOnlyMemory<RoutePrefix> chunk, CancellationToken ct)
    {
        var (attributes, groups, withdrawV4, withdrawV6) = (state.Attributes, state.Groups, state.WithdrawV4, state.WithdrawV6);
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
