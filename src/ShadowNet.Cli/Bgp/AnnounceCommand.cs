using System.CommandLine;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Cli.Bgp;

/// <summary><c>shadownet bgp announce</c>: peer with one router and announce prefixes until stopped.</summary>
internal static class AnnounceCommand
{
    public static Command Create()
    {
        var peer = new Option<string>("--peer") { Description = "Router address to peer with", DefaultValueFactory = _ => "127.0.0.1" };
        var peerPort = new Option<int>("--peer-port") { Description = "Router's BGP port", DefaultValueFactory = _ => 179 };
        var peerAs = new Option<uint>("--peer-as") { Description = "Router's AS number", Required = true };
        var localAs = new Option<uint>("--local-as") { Description = "Our AS number", Required = true };
        var routerId = new Option<string>("--router-id") { Description = "Our BGP identifier (IPv4)", DefaultValueFactory = _ => "127.0.0.1" };
        var localAddress = new Option<string?>("--local-address") { Description = "Source address for the connection (also the default next hop)" };
        var passive = new Option<bool>("--passive") { Description = "Wait for the router to connect instead of connecting" };
        var listen = new Option<string?>("--listen") { Description = "Accept connections on ADDRESS:PORT (needed with --passive)" };
        var hold = new Option<ushort>("--hold-time") { Description = "Hold time in seconds", DefaultValueFactory = _ => 90 };
        var connectRetry = new Option<double>("--connect-retry") { Description = "Seconds between connection attempts (doubles up to 60)", DefaultValueFactory = _ => 5 };
        var gr = new Option<ushort>("--graceful-restart") { Description = "Graceful restart time to advertise in seconds, 0 to disable", DefaultValueFactory = _ => 120 };
        var restarting = new Option<bool>("--restarting") { Description = "Announce as a speaker that has just restarted (RFC 4724's R bit): the router keeps our previous routes until our End-of-RIB" };
        var nextHop = new Option<string?>("--next-hop") { Description = "Next hop for IPv4 routes (default: our session address)" };
        var nextHopV6 = new Option<string?>("--next-hop-v6") { Description = "Next hop for IPv6 routes" };
        var community = new Option<string[]>("--community") { Description = "Community ASN:VALUE (repeatable)", AllowMultipleArgumentsPerToken = true };
        var large = new Option<string[]>("--large-community") { Description = "Large community A:B:C (repeatable)", AllowMultipleArgumentsPerToken = true };
        var med = new Option<uint?>("--med") { Description = "MULTI_EXIT_DISC" };
        var file = new Option<FileInfo?>("--prefix-file") { Description = "File with one prefix per line ('#' starts a comment)" };
        var generate = new Option<string?>("--generate") { Description = "First host route of a generated range, e.g. 10.0.0.0 or 2001:db8::" };
        var generateCount = new Option<int>("--generate-count") { Description = "Number of consecutive host routes to generate", DefaultValueFactory = _ => 0 };
        var quiet = new Option<bool>("--quiet") { Description = "Only print progress lines, no session logs" };
        var prefixes = new Argument<string[]>("prefixes") { Description = "Prefixes to announce", Arity = ArgumentArity.ZeroOrMore };

        var command = new Command("announce", "Peer with a router and announce prefixes until stopped (Ctrl-C sends an RFC 8203 shutdown)")
        {
            peer, peerPort, peerAs, localAs, routerId, localAddress, passive, listen, hold, connectRetry, gr, restarting,
            nextHop, nextHopV6, community, large, med, file, generate, generateCount, quiet, prefixes,
        };
        command.SetAction(async (parse, ct) =>
        {
            var started = Stopwatch.StartNew();
            var routes = new List<RoutePrefix>();
            foreach (var p in parse.GetValue(prefixes) ?? [])
                routes.Add(ParsePrefix(p, "prefix argument"));
            if (parse.GetValue(file) is { } f)
            {
                var lineNumber = 0;
                foreach (var line in File.ReadLines(f.FullName))
                {
                    lineNumber++;
                    var text = line.Split('#')[0].Trim();
                    if (text.Length > 0)
                        routes.Add(ParsePrefix(text, $"{f.Name} line {lineNumber}"));
                }
            }
            RoutePrefix[] generated = [];
            if (parse.GetValue(generate) is { } first)
            {
                var start = ParsePrefix(first, "--generate");
                generated = new RoutePrefix[parse.GetValue(generateCount)];
                for (var i = 0; i < generated.Length; i++)
                    generated[i] = start.IsIPv6 ? RoutePrefix.IPv6(start.Bits + (UInt128)i, 128) : RoutePrefix.IPv4(start.IPv4Bits + (uint)i, 32);
            }

            var attributes = new RouteAttributes
            {
                NextHop = parse.GetValue(nextHop) is { } nh ? IPAddress.Parse(nh) : null,
                MultiExitDisc = parse.GetValue(med),
                Communities = (parse.GetValue(community) ?? []).Select(ParseCommunity).ToList(),
                LargeCommunities = (parse.GetValue(large) ?? []).Select(c => LargeCommunity.TryParse(c, out var v) ? v : throw new FormatException($"--large-community '{c}' is not A:B:C")).ToList(),
            };
            var v6Attributes = new RouteAttributes
            {
                NextHop = parse.GetValue(nextHopV6) is { } nh6 ? IPAddress.Parse(nh6) : null,
                MultiExitDisc = attributes.MultiExitDisc,
                Communities = attributes.Communities,
                LargeCommunities = attributes.LargeCommunities,
            };

            using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(parse.GetValue(quiet) ? LogLevel.Warning : LogLevel.Information));
            var options = new BgpSpeakerOptions
            {
                LocalAs = parse.GetValue(localAs),
                RouterId = IPAddress.Parse(parse.GetValue(routerId)!),
                GracefulRestartSeconds = parse.GetValue(gr),
                Restarting = parse.GetValue(restarting),
            };
            if (parse.GetValue(listen) is { } l)
                options.Listen.Add(IPEndPoint.Parse(l));
            await using var speaker = new BgpSpeaker(options, TimeProvider.System, loggerFactory);
            var peerOptions = new BgpPeerOptions
            {
                Address = IPAddress.Parse(parse.GetValue(peer)!),
                Port = parse.GetValue(peerPort),
                RemoteAs = parse.GetValue(peerAs),
                LocalAddress = parse.GetValue(localAddress) is { } la ? IPAddress.Parse(la) : null,
                Passive = parse.GetValue(passive),
                HoldTimeSeconds = parse.GetValue(hold),
                ConnectRetry = TimeSpan.FromSeconds(parse.GetValue(connectRetry)),
                NextHopV6 = v6Attributes.NextHop,
            };
            var bgpPeer = speaker.AddPeer(peerOptions);

            foreach (var batch in new[] { routes.ToArray(), generated })
            {
                speaker.Announce(batch.Where(r => !r.IsIPv6).ToArray(), attributes);
                speaker.Announce(batch.Where(r => r.IsIPv6).ToArray(), v6Attributes);
            }
            var total = routes.Count + generated.Length;
            generated = [];
            routes.Clear();
            Console.Out.WriteLine($"loaded {total} prefixes in {started.Elapsed.TotalSeconds:F3} s");

            bgpPeer.StateChanged += (p, s) =>
            {
                if (s == BgpSessionState.Established)
                    Console.Out.WriteLine($"established with {p.Options.DisplayName} at {started.Elapsed.TotalSeconds:F3} s");
            };
            // SIGTERM (systemd, kill, timeout) stops like Ctrl-C: an RFC 8203 shutdown, not a dropped socket.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
            {
                c.Cancel = true;
                stop.Cancel();
            });
            speaker.Start();
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
            Console.Out.WriteLine($"stopping: sent {bgpPeer.PrefixesSent} prefixes in {bgpPeer.UpdatesSent} UPDATEs");
            await speaker.StopAsync("shadownet bgp announce stopped by the operator", CancellationToken.None);
            return 0;
        });
        return command;
    }

    private static RoutePrefix ParsePrefix(string text, string where) => RoutePrefix.TryParse(text, out var p)
        ? p
        : throw new FormatException($"{where}: '{text}' is not an IPv4 or IPv6 prefix");

    private static uint ParseCommunity(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2 || !ushort.TryParse(parts[0], out var hi) || !ushort.TryParse(parts[1], out var lo))
            throw new FormatException($"--community '{text}' is not ASN:VALUE with two 16-bit numbers");
        return ((uint)hi << 16) | lo;
    }
}
