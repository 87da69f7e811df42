using System.CommandLine;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using ShadowNet.Addressing;
using ShadowNet.Api.V1;
using ShadowNet.Daemon.Api;
using ShadowNet.Hooks.Udp;
using ControllerClient = ShadowNet.Api.V1.Controller.ControllerClient;
using HealthClient = Grpc.Health.V1.Health.HealthClient;

namespace ShadowNet.Cli.Controller;

/// <summary>
/// <c>shadownet status|peers|pools|allocations|routes|hook</c>: talk to a running shadownetd over its gRPC
/// API (hooks also over UDP). Tables for people, <c>--json</c> (protobuf's JSON mapping) for scripts.
/// </summary>
internal static class ControllerCommands
{
    private static readonly Option<string> Server = new("--server")
    {
        Description = "shadownetd's gRPC address: http://HOST:PORT, https://HOST:PORT or unix:PATH (default: $SHADOWNET_SERVER or http://127.0.0.1:50051)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SHADOWNET_SERVER") is { Length: > 0 } server ? server : "http://127.0.0.1:50051",
        Recursive = true,
    };

    private static readonly Option<bool> Json = new("--json") { Description = "Print JSON instead of a table", Recursive = true };

    private static readonly Option<string?> Authority = new("--tls-ca")
    {
        Description = "https: trust the daemon's certificate only if this CA (a PEM file) issued it, instead of the system's authorities",
        Recursive = true,
    };

    private static readonly Option<string?> Certificate = new("--tls-cert")
    {
        Description = "https: present this client certificate (PEM), for a daemon with grpc:tls:clientCa; with --tls-key",
        Recursive = true,
    };

    private static readonly Option<string?> Key = new("--tls-key") { Description = "The private key (PEM) of --tls-cert", Recursive = true };

    public static IEnumerable<Option> GlobalOptions => [Server, Json, Authority, Certificate, Key];

    public static IEnumerable<Command> Create() =>
    [
        Query("status", "The daemon: store, sessions, routes, hooks",
            async api => await api.GetStatusAsync(new GetStatusRequest()),
            reply => Table.Rows(
                ["version", reply.Version],
                ["started", reply.Started?.ToDateTimeOffset().ToString("u") ?? ""],
                ["store", reply.Store],
                ["store state", reply.StoreFailure.Length > 0 ? $"FAILED: {reply.StoreFailure}" : "ok"],
                ["acknowledged operations", reply.AcknowledgedOperations.ToString()],
                ["BGP peers established", $"{reply.PeersEstablished} of {reply.Peers}"],
                ["active routes", reply.ActiveRoutes.ToString()],
                ["UDP hooks", reply.UdpHooks.Length > 0 ? reply.UdpHooks : "off"])),
        Query("peers", "BGP peers and their sessions",
            async api => await api.ListPeersAsync(new ListPeersRequest()),
            reply => Table.Columns(["PEER", "ADDRESS", "AS", "STATE", "FOR", "HOLD", "PREFIXES SENT", "UPDATES OUT", "UPDATES IN", "LAST ERROR"],
                reply.Peers.Select(p => new[]
                {
                    p.Name, $"{p.Address}:{p.Port}", p.RemoteAs.ToString(), p.Shutdown ? $"{p.State} (shutdown)" : p.State, Since(p.StateSince), p.HoldTime > 0 ? $"{p.HoldTime}s" : "",
                    p.PrefixesSent.ToString(), p.UpdatesSent.ToString(), p.UpdatesReceived.ToString(), p.Shutdown ? p.ShutdownMessage : p.LastError,
                }))),
        Query("pools", "Address pools: free, reserved (staged), active, cooling",
            async api => await api.ListPoolsAsync(new ListPoolsRequest()),
            reply => Table.Columns(["POOL", "KIND", "FAMILY", "SIZE", "FREE", "RESERVED", "ACTIVE", "COOLING"],
                reply.Pools.Select(p => new[] { p.Name, p.Kind, p.Family == Family.Ipv6 ? "ipv6" : "ipv4", p.Size.ToString(), p.Free.ToString(), p.Reserved.ToString(), p.Active.ToString(), p.Cooling.ToString() }))),
        Allocations(),
        Query("forecast", "What the forecast loop last planned per application",
            async api => await api.GetForecastAsync(new GetForecastRequest()),
            reply => $"forecaster: {reply.Forecaster}, step {reply.StepSeconds} s\n" + Table.Columns(["APPLICATION", "BY", "ACTIVE", "EXPECTED", "RESERVED", "ADDITIONAL", "PREFIX", "REQUESTS/S", "AT"],
                reply.Forecasts.Select(f => new[] { f.Application, f.Forecaster, f.Active.ToString(), f.Expected.ToString(), f.Reserved.ToString(), f.Additional.ToString(), $"/{f.PrefixLength}",
                    f.ExpectedRequestsPerSecond > 0 ? f.ExpectedRequestsPerSecond.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture) : "", f.At?.ToDateTimeOffset().ToString("u") ?? "" }))),
        Query("routes", "Routes in the BGP speaker: active, and staged with the shadow community",
            async api => await api.ListRoutesAsync(new ListRoutesRequest()),
            reply => Table.Columns(["PREFIX", "NEXT HOP", "STATE", "COMMUNITIES"],
                reply.Routes.Select(r => new[] { r.Prefix, r.NextHop, r.State, string.Join(' ', r.Communities) }))
                + $"{reply.Held} reservations held (staged, not sent)\n"),
        Health(),
        Hook(),
        ExportTrainingDataCommand.Create(),
        ReportMetricsCommand.Create(),
    ];

    /// <summary>How long ago, as routers print it: 45s, 3m12s, 2h05m, 4d03h.</summary>
    private static string Since(Google.Protobuf.WellKnownTypes.Timestamp? time)
    {
        if (time is null)
        {
            return "";
        }

        var span = DateTimeOffset.UtcNow - time.ToDateTimeOffset();
        return span < TimeSpan.Zero ? "0s"
            : span.TotalMinutes < 1 ? $"{span.Seconds}s"
            : span.TotalHours < 1 ? $"{span.Minutes}m{span.Seconds:00}s"
            : span.TotalDays < 1 ? $"{span.Hours}h{span.Minutes:00}m"
            : $"{(int)span.TotalDays}d{span.Hours:00}h";
    }

    /// <summary>
    /// The standard gRPC health check (grpc.health.v1): exit 0 when serving, 1 when not (starting,
    /// stopping, or the store has failed; <c>status</c> says why) or unreachable. For container probes.
    /// </summary>
    private static Command Health()
    {
        var command = new Command("health", "Whether shadownetd serves (gRPC health check): exit 0 serving, 1 not or unreachable");
        command.SetAction(async (parse, _) =>
        {
            var serving = false;
            var reached = await RunAsync(parse, channel => new HealthClient(channel), async health =>
            {
                var status = (await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(10))).Status;
                serving = status == HealthCheckResponse.Types.ServingStatus.Serving;
                Console.WriteLine(parse.GetValue(Json) ? JsonFormatter.Default.Format(new HealthCheckResponse { Status = status }) : serving ? "serving" : "not serving");
            });
            return reached != 0 ? reached : serving ? 0 : 1;
        });
        return command;
    }

    private static Command Query<TReply>(string name, string description, Func<ControllerClient, Task<TReply>> call, Func<TReply, string> table)
        where TReply : IMessage
    {
        var command = new Command(name, description);
        command.SetAction(async (parse, _) => await RunAsync(parse, async api => Print(parse, await call(api), table)));
        return command;
    }

    private static Command Allocations()
    {
        var application = new Option<string?>("--application") { Description = "Only this application's addresses" };
        var limit = new Option<int>("--limit") { Description = "At most this many (0: all, in pages of 1000)" };
        var command = new Command("allocations", "Addresses taken: reserved, active, cooling") { application, limit };
        command.SetAction(async (parse, _) => await RunAsync(parse, async api =>
        {
            var all = new ListAllocationsReply();
            var wanted = parse.GetValue(limit);
            var request = new ListAllocationsRequest { Application = parse.GetValue(application) ?? "", Limit = wanted is > 0 and < 1000 ? wanted : 1000 };
            do
            {
                var page = await api.ListAllocationsAsync(request);
                all.Allocations.AddRange(page.Allocations);
                request.After = page.Next;
            }
            while (request.After.Length > 0 && (wanted == 0 || all.Allocations.Count < wanted));

            Print(parse, all, reply => Table.Columns(["ADDRESS", "POOL", "STATE", "APPLICATION", "INSTANCE", "HIT", "HOST", "SINCE"],
                reply.Allocations.Select(a => new[] { a.Address, a.Pool, a.State, a.Application, a.Instance, a.State == "active" ? (a.Preallocated ? "yes" : "no") : "", a.Host, a.Since?.ToDateTimeOffset().ToString("u") ?? "" })));
        }));
        return command;
    }

    private static Command Hook()
    {
        var instance = new Option<string>("--instance") { Description = "Instance id (VM or container name)", Required = true };
        var application = new Option<string>("--application") { Description = "Application the instance belongs to", Required = true };
        var family = new Option<string>("--family") { Description = "ipv4 or ipv6", DefaultValueFactory = _ => "ipv4" };
        var host = new Option<string?>("--host") { Description = "The hypervisor's address: the route's next hop" };
        var udp = new Option<string?>("--udp") { Description = "Send over the UDP fast path to HOST:PORT instead of gRPC" };
        var keyId = new Option<ushort>("--key-id") { Description = "UDP: the key's id", DefaultValueFactory = _ => 1 };
        var key = new Option<string?>("--key") { Description = "UDP: the key, in hex (or $SHADOWNET_HOOK_KEY)" };
        var keyFile = new Option<FileInfo?>("--key-file") { Description = "UDP: a file holding the key in hex" };

        Command Make(string name, string description, HookKind kind)
        {
            var command = new Command(name, description) { instance, application, family, udp, keyId, key, keyFile };
            if (kind == HookKind.Create)
            {
                command.Options.Add(host);
            }

            command.SetAction(async (parse, ct) =>
            {
                var ipFamily = parse.GetValue(family)?.ToLowerInvariant() switch
                {
                    "ipv4" => IpFamily.IPv4,
                    "ipv6" => IpFamily.IPv6,
                    var other => throw new UsageException($"--family: '{other}' is not ipv4 or ipv6"),
                };
                Address? hostAddress = parse.GetValue(host) is { } text
                    ? Address.TryParse(text, out var parsed) ? parsed : throw new UsageException($"--host: '{text}' is not an IP address")
                    : null;
                var (id, app) = (parse.GetValue(instance)!, parse.GetValue(application)!);
                if (parse.GetValue(udp) is { } target)
                {
                    return await SendUdpAsync(parse, target, parse.GetValue(keyId), ReadKey(parse.GetValue(key), parse.GetValue(keyFile)), kind, id, app, ipFamily, hostAddress, ct);
                }

                return await RunAsync(parse, async api =>
                {
                    var apiFamily = ipFamily == IpFamily.IPv6 ? Family.Ipv6 : Family.Ipv4;
                    if (kind == HookKind.Create)
                    {
                        var reply = await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = id, Application = app, Family = apiFamily, Host = hostAddress?.ToString() ?? "" });
                        Print(parse, reply, r => $"{id} {app} {r.Address} {(r.Outcome == Outcome.Hit ? "hit" : "miss")}\n");
                    }
                    else
                    {
                        var reply = await api.DeleteInstanceAsync(new DeleteInstanceRequest { Instance = id, Application = app, Family = apiFamily });
                        Print(parse, reply, r => $"{id} {app} {r.Address} deleted\n");
                    }
                });
            });
            return command;
        }

        return new Command("hook", "Send the create or delete a hypervisor hook sends (gRPC, or UDP with --udp)")
        {
            Make("create", "An instance was created: assign its address and announce its route", HookKind.Create),
            Make("delete", "An instance was deleted: withdraw its route and release its address", HookKind.Delete),
        };
    }

    private static async Task<int> SendUdpAsync(ParseResult parse, string target, ushort keyId, byte[] key, HookKind kind,
        string instance, string application, IpFamily family, Address? host, CancellationToken ct)
    {
        if (!IPEndPoint.TryParse(target, out var server) || server.Port == 0)
        {
            throw new UsageException($"--udp: '{target}' is not HOST:PORT");
        }

        // Each run is a new client: a microsecond clock keeps sequence numbers rising across runs (the server's replay window).
        using var client = new HookClient(server, keyId, key, (ulong)(DateTime.UtcNow.Ticks / 10));
        HookReply reply;
        try
        {
            reply = kind == HookKind.Create
                ? await client.CreateAsync(instance, application, family, host, ct)
                : await client.DeleteAsync(instance, application, family, ct);
        }
        catch (TimeoutException)
        {
            await Console.Error.WriteLineAsync($"shadownet: no acknowledgement from {server} after {client.LastAttempts} attempts (wrong key, or the daemon is down)");
            return 1;
        }

        var status = reply.Status.ToString().ToLowerInvariant();
        if (parse.GetValue(Json))
        {
            Console.WriteLine($$"""{"instance":{{System.Text.Json.JsonSerializer.Serialize(instance)}},"address":"{{reply.Address}}","status":"{{status}}"}""");
        }
        else
        {
            Console.WriteLine($"{instance} {application} {reply.Address?.ToString() ?? "-"} {status}");
        }

        return reply.Status is HookStatus.Hit or HookStatus.Miss or HookStatus.Deleted ? 0 : 1;
    }

    private static byte[] ReadKey(string? hex, FileInfo? file)
    {
        var text = hex ?? (file is not null ? File.ReadAllText(file.FullName).Trim() : Environment.GetEnvironmentVariable("SHADOWNET_HOOK_KEY"))
            ?? throw new UsageException("--udp needs --key, --key-file or $SHADOWNET_HOOK_KEY");
        try
        {
            return Convert.FromHexString(text);
        }
        catch (FormatException)
        {
            throw new UsageException("the hook key is not hex");
        }
    }

    internal static Task<int> RunAsync(ParseResult parse, Func<ControllerClient, Task> call) =>
        RunAsync(parse, channel => new ControllerClient(channel), call);

    private static async Task<int> RunAsync<TClient>(ParseResult parse, Func<GrpcChannel, TClient> client, Func<TClient, Task> call)
    {
        var server = parse.GetValue(Server)!;
        try
        {
            using var channel = Connect(server, Tls(parse));
            await call(client(channel));
            return 0;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
        {
            await Console.Error.WriteLineAsync($"shadownet: cannot reach shadownetd at {server}: {e.Status.Detail}");
            return 1;
        }
        catch (RpcException e)
        {
            await Console.Error.WriteLineAsync($"shadownet: {e.StatusCode}: {e.Status.Detail}");
            return 1;
        }
    }

    /// <summary>The TLS settings of --tls-ca, --tls-cert and --tls-key (for an https server).</summary>
    private static SslClientAuthenticationOptions Tls(ParseResult parse)
    {
        var options = new SslClientAuthenticationOptions();
        if (parse.GetValue(Authority) is { } authorityFile)
        {
            var authorities = new X509Certificate2Collection();
            try
            {
                authorities.ImportFromPemFile(authorityFile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                throw new UsageException($"--tls-ca: cannot read certificates from '{authorityFile}': {e.Message}");
            }

            // The name must match as usual; the chain must end at the given CA rather than the system's.
            options.RemoteCertificateValidationCallback = (_, certificate, _, errors) => certificate is X509Certificate2 server
                && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None && TlsTrust.IsServerOf(server, authorities);
        }

        if (parse.GetValue(Certificate) is { } certificateFile)
        {
            var keyFile = parse.GetValue(Key) ?? throw new UsageException("--tls-cert needs --tls-key (the certificate's private key)");
            try
            {
                options.ClientCertificates = [X509Certificate2.CreateFromPemFile(certificateFile, keyFile)];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
            {
                throw new UsageException($"--tls-cert, --tls-key: cannot read a certificate and its key from '{certificateFile}' and '{keyFile}': {e.Message}");
            }
        }

        return options;
    }

    private static GrpcChannel Connect(string server, SslClientAuthenticationOptions tls)
    {
        if (!server.StartsWith("unix:", StringComparison.Ordinal))
        {
            return Uri.TryCreate(server, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
                ? GrpcChannel.ForAddress(uri, new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler { SslOptions = tls } })
                : throw new UsageException($"--server: '{server}' is not http://HOST:PORT, https://HOST:PORT or unix:PATH");
        }

        var path = server["unix:".Length..];
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler });
    }

    private static void Print<TReply>(ParseResult parse, TReply reply, Func<TReply, string> table)
        where TReply : IMessage =>
        Console.Write(parse.GetValue(Json) ? JsonFormatter.Default.Format(reply) + "\n" : table(reply));
}

/// <summary>A command line that cannot work; printed without a stack trace, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
