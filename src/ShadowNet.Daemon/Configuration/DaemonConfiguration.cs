using System.Globalization;
using System.Numerics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Planning;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Daemon.Prediction;
using ShadowNet.Hooks.Udp;
using ShadowNet.Prediction.Forecasting;
using BgpFamily = ShadowNet.Bgp.Wire.AddressFamily;

namespace ShadowNet.Daemon.Configuration;

/// <summary>A configuration value that cannot work; the message starts with the key (JSON path, ':' separated).</summary>
public sealed class ConfigurationException(string key, string problem) : Exception($"{key}: {problem}")
{
    public string Key { get; } = key;
}

/// <summary>A TCP end point or a Unix socket path, with TLS if configured.</summary>
public sealed record GrpcListen(IPEndPoint? EndPoint, string? UnixSocket, GrpcTls? Tls = null);

/// <summary>
/// TLS for the gRPC API (<c>grpc:tls</c>): the server's certificate with its key and, for mutual TLS, the
/// authorities whose certificates callers must present (<c>clientCa</c>; null: any caller may connect).
/// </summary>
public sealed record GrpcTls(X509Certificate2 Certificate, X509Certificate2Collection? ClientAuthorities);

/// <summary>
/// Everything shadownetd needs, read from the merged configuration (JSON file, SHADOWNET_ environment
/// variables, command line) and checked value by value, so that a wrong value stops start-up with an
/// error naming its key instead of surfacing later as a strange behaviour.
/// </summary>
public sealed record DaemonConfiguration
{
    public required string StorePath { get; init; }

    public StoreSync StoreSync { get; init; }

    /// <summary>Leases (reserved, active, cooling) the allocator's tables, and the speaker's Loc-RIB, are sized for at start; 0: the defaults.</summary>
    public int ExpectedLeases { get; init; }

    public required BgpSpeakerOptions Bgp { get; init; }

    public required IReadOnlyList<BgpPeerOptions> Peers { get; init; }

    public required IReadOnlyList<PoolDefinition> Pools { get; init; }

    public required RouteManagerOptions Routes { get; init; }

    public HookServerOptions? UdpHooks { get; init; }

    /// <summary>Where the Prometheus endpoint (<c>/metrics</c>) listens, like 127.0.0.1:9464; null: off.</summary>
    public IPEndPoint? MetricsListen { get; init; }

    /// <summary>Where the gRPC API listens (HTTP/2): an address:port or a Unix socket; null: off.</summary>
    public GrpcListen? GrpcListen { get; init; }

    /// <summary>The forecast loop (the <c>prediction</c> section); null: no forecasting, reservations come from <c>warm</c> only.</summary>
    public PredictionOptions? Prediction { get; init; }

    /// <summary>JSON-lines file that each miss is appended to, for retraining; null: misses go to the store only.</summary>
    public string? MissLogPath { get; init; }

    public static DaemonConfiguration Read(IConfiguration configuration)
    {
        var bgp = configuration.GetSection("bgp");
        var speaker = new BgpSpeakerOptions
        {
            LocalAs = RequiredUInt(bgp, "localAs", 1, uint.MaxValue),
            RouterId = RequiredIPv4(bgp, "routerId"),
            GracefulRestartSeconds = (ushort)OptionalUInt(bgp, "gracefulRestart", 0, 4095, 120),
        };
        foreach (var entry in bgp.GetSection("listen").GetChildren())
        {
            speaker.Listen.Add(EndPoint(entry.Path, entry.Value));
        }

        var peerSections = bgp.GetSection("peers").GetChildren().ToList();
        var peers = peerSections.Select(ReadPeer).ToList();
        if (peers.Count == 0)
        {
            throw new ConfigurationException("bgp:peers", "at least one peer is needed");
        }

        // A neighbor is its address and port: a reload matches peers by them.
        for (var i = 1; i < peers.Count; i++)
        {
            if (peers.FindIndex(0, i, p => p.Address.Equals(peers[i].Address) && p.Port == peers[i].Port) is var first and >= 0)
            {
                throw new ConfigurationException($"{peerSections[i].Path}:address", $"{peers[i].Address} port {peers[i].Port} is {peerSections[first].Path}'s too");
            }
        }

        var poolSections = configuration.GetSection("pools").GetChildren().ToList();
        var pools = poolSections.Select(ReadPool).ToList();
        if (pools.Count == 0)
        {
            throw new ConfigurationException("pools", "at least one pool is needed");
        }

        CheckPools(pools);
        var routes = configuration.GetSection("routes");
        var staging = poolSections.ToDictionary(p => p["name"]!, ReadStaging);
        ShadowCommunity? shadowCommunity = null;
        if (routes["shadowCommunity"] is { } shadowText)
        {
            shadowCommunity = ShadowCommunity.TryParse(shadowText, out var parsed)
                ? parsed
                : throw new ConfigurationException("routes:shadowCommunity", $"'{shadowText}' is not a community 'asn:value' or a large community 'asn:data1:data2'");
        }
        else if (staging.ContainsValue(StagingMode.Community))
        {
            throw new ConfigurationException("routes:shadowCommunity", "missing; pools with staging 'community' need it");
        }

        var communities = new List<uint>();
        var largeCommunities = new List<ShadowNet.Bgp.Wire.LargeCommunity>();
        foreach (var entry in routes.GetSection("communities").GetChildren())
        {
            if (!ShadowCommunity.TryParse(entry.Value, out var community))
            {
                throw new ConfigurationException(entry.Path, $"'{entry.Value}' is not a community 'asn:value' or a large community 'asn:data1:data2'");
            }

            if (community.Large is { } large)
            {
                largeCommunities.Add(large);
            }
            else
            {
                communities.Add(community.Standard!.Value);
            }
        }

        var store = configuration.GetSection("store");
        var storePath = store["path"];
        if (string.IsNullOrWhiteSpace(storePath))
        {
            throw new ConfigurationException("store:path", "missing (the SQLite state file)");
        }

        // The Loc-RIB is sized from it too, at start-up (ControllerService), as the allocator's tables are.
        var expectedLeases = OptionalInt(store, "expectedLeases", 0, AddressAllocator.MaxExpectedLeases, 0);

        return new DaemonConfiguration
        {
            StorePath = storePath,
            StoreSync = store["sync"]?.ToLowerInvariant() switch
            {
                null or "full" => StoreSync.Full,
                "normal" => StoreSync.Normal,
                var other => throw new ConfigurationException("store:sync", $"'{other}' is not 'full' or 'normal'"),
            },
            ExpectedLeases = expectedLeases,
            Bgp = speaker,
            Peers = peers,
            Pools = pools,
            Routes = new RouteManagerOptions
            {
                DefaultNextHopV4 = OptionalAddress(routes, "defaultNextHopV4", IpFamily.IPv4),
                DefaultNextHopV6 = OptionalAddress(routes, "defaultNextHopV6", IpFamily.IPv6),
                Communities = communities,
                LargeCommunities = largeCommunities,
                Staging = staging,
                ShadowCommunity = shadowCommunity,
                Warm = [.. configuration.GetSection("warm").GetChildren().Select(ReadWarm)],
            },
            UdpHooks = ReadUdpHooks(configuration.GetSection("hooks:udp")),
            GrpcListen = configuration["grpc:listen"] is { } grpc
                ? grpc.StartsWith("unix:", StringComparison.Ordinal)
                    ? configuration.GetSection("grpc:tls").Exists()
                        ? throw new ConfigurationException("grpc:tls", "is for a TCP address; a Unix socket's file permissions say who may call")
                        : new GrpcListen(null, grpc["unix:".Length..] is { Length: > 0 } socket ? socket : throw new ConfigurationException("grpc:listen", "'unix:' needs a socket path"))
                    : new GrpcListen(EndPoint("grpc:listen", grpc), null, ReadGrpcTls(configuration.GetSection("grpc:tls")))
                : null,
            Prediction = ReadPrediction(configuration.GetSection("prediction")),
            MissLogPath = configuration["events:missLog"] is { Length: > 0 } missLog ? missLog : null,
            MetricsListen = configuration["metrics:listen"] is { } metrics ? EndPoint("metrics:listen", metrics) : null,
        };
    }

    private static BgpPeerOptions ReadPeer(IConfigurationSection peer)
    {
        var families = new List<BgpFamily>();
        foreach (var family in peer.GetSection("families").GetChildren())
        {
            families.Add(family.Value?.ToLowerInvariant() switch
            {
                "ipv4" => BgpFamily.IPv4Unicast,
                "ipv6" => BgpFamily.IPv6Unicast,
                var other => throw new ConfigurationException(family.Path, $"'{other}' is not 'ipv4' or 'ipv6'"),
            });
        }

        var options = new BgpPeerOptions
        {
            Name = peer["name"] ?? "",
            Address = RequiredAddress(peer, "address"),
            Port = (int)OptionalUInt(peer, "port", 1, 65535, 179),
            RemoteAs = RequiredUInt(peer, "remoteAs", 1, uint.MaxValue),
            LocalAddress = OptionalAddress(peer, "localAddress", null),
            Passive = OptionalBool(peer, "passive"),
            HoldTimeSeconds = (ushort)OptionalUInt(peer, "holdTime", 0, 65535, 90),
            MaxPrefixes = peer["maxPrefixes"] is null ? null : (int)RequiredUInt(peer, "maxPrefixes", 1, int.MaxValue),
            Password = peer["password"],
            TtlSecurityHops = peer["ttlSecurityHops"] is null ? null : (int)RequiredUInt(peer, "ttlSecurityHops", 1, 254),
            // Held down, as for maintenance, with the message the router is told (true: none).
            ShutdownMessage = peer["shutdown"] switch
            {
                null => null,
                var text when text.Equals("false", StringComparison.OrdinalIgnoreCase) => null,
                var text when text.Equals("true", StringComparison.OrdinalIgnoreCase) => "",
                { } text when System.Text.Encoding.UTF8.GetByteCount(text) > 255 =>
                    throw new ConfigurationException($"{peer.Path}:shutdown", "is longer than 255 octets of UTF-8 (RFC 9003's limit for a shutdown message)"),
                { } text => text,
            },
        };
        if (options.HoldTimeSeconds is 1 or 2)
        {
            throw new ConfigurationException($"{peer.Path}:holdTime", "must be 0 or at least 3 (RFC 4271 section 4.2)");
        }

        if (options.Password is { } password && TcpSecurity.CheckPassword(password) is { } problem)
        {
            throw new ConfigurationException($"{peer.Path}:password", problem);
        }

        if ((options.Password is not null || options.TtlSecurityHops is not null) && !OperatingSystem.IsLinux())
        {
            throw new ConfigurationException($"{peer.Path}:{(options.Password is not null ? "password" : "ttlSecurityHops")}", "needs Linux (TCP_MD5SIG, IP_MINTTL)");
        }

        if (families.Count > 0)
        {
            options.Families.Clear();
            options.Families.AddRange(families);
        }

        return options;
    }

    private static PoolDefinition ReadPool(IConfigurationSection pool)
    {
        var name = pool["name"];
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ConfigurationException($"{pool.Path}:name", "missing");
        }

        var kind = pool["kind"]?.ToLowerInvariant() switch
        {
            "shadow" => PoolKind.Shadow,
            "dynamic" => PoolKind.Dynamic,
            var other => throw new ConfigurationException($"{pool.Path}:kind", $"'{other}' is not 'shadow' or 'dynamic'"),
        };
        var prefixes = new List<IPNetwork>();
        foreach (var prefix in pool.GetSection("prefixes").GetChildren())
        {
            // Host bits past the length are refused: "10.1.0.5/16" is a typo more often than a wish.
            if (prefix.Value?.Contains('/', StringComparison.Ordinal) != true
                || !IPNetwork.TryParse(prefix.Value, out var network)
                || !Address.TryParse(prefix.Value![..prefix.Value!.IndexOf('/', StringComparison.Ordinal)], out var written)
                || written != Address.From(network.BaseAddress))
            {
                throw new ConfigurationException(prefix.Path, $"'{prefix.Value}' is not a prefix (like 10.1.0.0/16)");
            }

            prefixes.Add(network);
        }

        var exclusions = new List<AddressRange>();
        foreach (var exclusion in pool.GetSection("exclude").GetChildren())
        {
            if (!AddressRange.TryParse(exclusion.Value, out var range))
            {
                throw new ConfigurationException(exclusion.Path, $"'{exclusion.Value}' is not an address, a range 'first-last' or a prefix");
            }

            exclusions.Add(range);
        }

        var reuse = TimeSpan.Zero;
        if (pool["reuseDelay"] is { } text && !TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out reuse))
        {
            throw new ConfigurationException($"{pool.Path}:reuseDelay", $"'{text}' is not a time span (like 00:00:30)");
        }

        var definition = new PoolDefinition(name, kind, prefixes, exclusions, pool["application"], reuse);
        try
        {
            definition.Validate();
        }
        catch (PoolConfigurationException e)
        {
            throw new ConfigurationException(pool.Path, e.Message);
        }

        return definition;
    }

    private static PredictionOptions? ReadPrediction(IConfigurationSection prediction)
    {
        if (!prediction.Exists())
        {
            return null;
        }

        var step = (int)OptionalUInt(prediction, "stepSeconds", 1, 86_400, 300);
        var fallbackText = prediction["fallback"] ?? "seasonal-naive";
        if (!Baselines.TryCreate(fallbackText, step, out var fallback))
        {
            throw new ConfigurationException("prediction:fallback", $"'{fallbackText}' is not {Baselines.Names}");
        }

        var confidence = 0.99;
        if (prediction["confidence"] is { } text
            && (!double.TryParse(text, CultureInfo.InvariantCulture, out confidence) || confidence is <= 0 or >= 1))
        {
            throw new ConfigurationException("prediction:confidence", $"'{text}' is not a number between 0 and 1");
        }

        var planner = new PlannerOptions();
        var cooldown = planner.ShrinkCooldown;
        if (prediction["shrinkCooldown"] is { } cooldownText
            && (!TimeSpan.TryParse(cooldownText, CultureInfo.InvariantCulture, out cooldown) || cooldown < TimeSpan.Zero))
        {
            throw new ConfigurationException("prediction:shrinkCooldown", $"'{cooldownText}' is not a time span (like 00:05:00)");
        }

        return new PredictionOptions
        {
            ModelPath = prediction["model"] is { Length: > 0 } model ? Path.GetFullPath(model) : null,
            Fallback = fallback,
            Confidence = confidence,
            StepSeconds = step,
            Planner = planner with
            {
                ShrinkCooldown = cooldown,
                ShrinkHysteresis = (int)OptionalUInt(prediction, "shrinkHysteresis", 0, 1_000_000, (uint)planner.ShrinkHysteresis),
                MinimumReserve = (int)OptionalUInt(prediction, "minimumReserve", 0, 1_000_000, (uint)planner.MinimumReserve),
            },
            Prometheus = ReadPrometheus(prediction.GetSection("prometheus")),
        };
    }

    private static PrometheusFeedOptions? ReadPrometheus(IConfigurationSection prometheus)
    {
        if (!prometheus.Exists())
        {
            return null;
        }

        var text = prometheus["url"];
        if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            throw new ConfigurationException($"{prometheus.Path}:url", $"'{text}' is not an http(s) URL");
        }

        var applications = new List<PrometheusApplication>();
        foreach (var application in prometheus.GetSection("applications").GetChildren())
        {
            var instances = application["instances"];
            if (string.IsNullOrWhiteSpace(instances))
            {
                throw new ConfigurationException($"{application.Path}:instances", "missing (a PromQL query giving the running instances)");
            }

            applications.Add(new PrometheusApplication(application.Key, instances, application["load"]));
        }

        return applications.Count > 0
            ? new PrometheusFeedOptions(url.AbsoluteUri.EndsWith('/') ? url : new Uri(url.AbsoluteUri + "/"), applications)
            : throw new ConfigurationException($"{prometheus.Path}:applications", "at least one application with an 'instances' query is needed");
    }

    private static StagingMode ReadStaging(IConfigurationSection pool) => pool["staging"]?.ToLowerInvariant() switch
    {
        null or "held" => StagingMode.Held,
        "community" => StagingMode.Community,
        var other => throw new ConfigurationException($"{pool.Path}:staging", $"'{other}' is not 'held' or 'community'"),
    };

    private static WarmTarget ReadWarm(IConfigurationSection warm)
    {
        var application = warm["application"];
        if (string.IsNullOrWhiteSpace(application))
        {
            throw new ConfigurationException($"{warm.Path}:application", "missing");
        }

        var family = warm["family"]?.ToLowerInvariant() switch
        {
            null or "ipv4" => IpFamily.IPv4,
            "ipv6" => IpFamily.IPv6,
            var other => throw new ConfigurationException($"{warm.Path}:family", $"'{other}' is not 'ipv4' or 'ipv6'"),
        };
        return new WarmTarget(application, family, (int)RequiredUInt(warm, "count", 0, 1_000_000));
    }

    private static void CheckPools(List<PoolDefinition> pools)
    {
        try
        {
            _ = new Addressing.Allocation.AddressAllocator(pools);
        }
        catch (PoolConfigurationException e)
        {
            throw new ConfigurationException("pools", e.Message);
        }
    }

    private static HookServerOptions? ReadUdpHooks(IConfigurationSection udp)
    {
        if (!udp.Exists())
        {
            return null;
        }

        var keys = new Dictionary<ushort, byte[]>();
        foreach (var key in udp.GetSection("keys").GetChildren())
        {
            if (!ushort.TryParse(key.Key, CultureInfo.InvariantCulture, out var id))
            {
                throw new ConfigurationException(key.Path, "key ids are numbers from 0 to 65535");
            }

            byte[] bytes;
            try
            {
                bytes = Convert.FromHexString(key.Value ?? "");
            }
            catch (FormatException)
            {
                throw new ConfigurationException(key.Path, "not hexadecimal");
            }

            if (bytes.Length < 16)
            {
                throw new ConfigurationException(key.Path, $"{bytes.Length} octets; at least 16 are needed");
            }

            keys[id] = bytes;
        }

        if (keys.Count == 0)
        {
            throw new ConfigurationException($"{udp.Path}:keys", "at least one key is needed (an unauthenticated hook is not offered)");
        }

        return new HookServerOptions
        {
            Listen = EndPoint($"{udp.Path}:listen", udp["listen"]),
            Keys = keys,
            ReceiverNice = OptionalInt(udp, "receiverNice", -20, 19, 0),
            InlineBatchLimit = (int)OptionalUInt(udp, "inlineBatch", 0, 1024, 16),
            InlineRateLimit = (int)OptionalUInt(udp, "inlineRate", 0, 10_000_000, 30_000),
        };
    }

    private static GrpcTls? ReadGrpcTls(IConfigurationSection tls)
    {
        if (!tls.Exists())
        {
            return null;
        }

        var certificatePath = ReadableFile(tls, "certificate");
        var keyPath = ReadableFile(tls, "key");
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException) // ArgumentException: the key is another certificate's
        {
            throw new ConfigurationException($"{tls.Path}:certificate",
                $"'{certificatePath}' and '{keyPath}' ({tls.Path}:key) are not a PEM certificate and its private key: {e.Message}");
        }

        if (certificate.NotAfter < DateTime.Now)
        {
            throw new ConfigurationException($"{tls.Path}:certificate", $"'{certificatePath}' expired on {certificate.NotAfter:u}");
        }

        X509Certificate2Collection? authorities = null;
        if (tls["clientCa"] is not null)
        {
            var authoritiesPath = ReadableFile(tls, "clientCa");
            authorities = [];
            try
            {
                authorities.ImportFromPemFile(authoritiesPath);
            }
            catch (CryptographicException e)
            {
                throw new ConfigurationException($"{tls.Path}:clientCa", $"'{authoritiesPath}' is not PEM certificates: {e.Message}");
            }

            if (authorities.Count == 0)
            {
                throw new ConfigurationException($"{tls.Path}:clientCa", $"'{authoritiesPath}' holds no certificate");
            }
        }

        return new GrpcTls(certificate, authorities);
    }

    private static string ReadableFile(IConfigurationSection section, string name)
    {
        var path = section[name] is { Length: > 0 } value ? value : throw new ConfigurationException($"{section.Path}:{name}", "missing");
        try
        {
            using var file = File.OpenRead(path);
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"{section.Path}:{name}", $"cannot read '{path}': {e.Message}");
        }
    }

    private static IPEndPoint EndPoint(string key, string? text) =>
        IPEndPoint.TryParse(text ?? "", out var endPoint) && endPoint.Port != 0
            ? endPoint
            : throw new ConfigurationException(key, $"'{text}' is not an address:port");

    private static uint RequiredUInt(IConfigurationSection section, string name, uint min, uint max) =>
        section[name] is null ? throw new ConfigurationException($"{section.Path}:{name}", "missing") : OptionalUInt(section, name, min, max, 0);

    private static uint OptionalUInt(IConfigurationSection section, string name, uint min, uint max, uint fallback) =>
        OptionalNumber(section, name, min, max, fallback);

    private static int OptionalInt(IConfigurationSection section, string name, int min, int max, int fallback) =>
        OptionalNumber(section, name, min, max, fallback);

    private static T OptionalNumber<T>(IConfigurationSection section, string name, T min, T max, T fallback)
        where T : struct, IBinaryInteger<T>
    {
        var text = section[name];
        if (text is null)
        {
            return fallback;
        }

        return T.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new ConfigurationException($"{section.Path}:{name}", $"'{text}' is not a whole number from {min} to {max}");
    }

    private static bool OptionalBool(IConfigurationSection section, string name) =>
        section[name] is not { } text ? false
        : bool.TryParse(text, out var value) ? value
        : throw new ConfigurationException($"{section.Path}:{name}", $"'{text}' is not true or false");

    private static IPAddress RequiredAddress(IConfigurationSection section, string name) =>
        OptionalAddress(section, name, null) ?? throw new ConfigurationException($"{section.Path}:{name}", "missing");

    private static IPAddress RequiredIPv4(IConfigurationSection section, string name)
    {
        var address = RequiredAddress(section, name);
        return address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
            ? address
            : throw new ConfigurationException($"{section.Path}:{name}", "a BGP identifier is an IPv4 address (RFC 4271 section 4.2)");
    }

    private static IPAddress? OptionalAddress(IConfigurationSection section, string name, IpFamily? family)
    {
        var text = section[name];
        if (text is null)
        {
            return null;
        }

        if (!Address.TryParse(text, out var address) || (family is { } f && address.Family != f))
        {
            throw new ConfigurationException($"{section.Path}:{name}", $"'{text}' is not an {(family is null ? "IP" : family.ToString())} address");
        }

        return address.ToIPAddress();
    }
}
