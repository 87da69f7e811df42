using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;

namespace ShadowNet.Daemon.Tests;

/// <summary>Runs the real shadownetd process from the test's output folder, with a test configuration.</summary>
internal static class Shadownetd
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    public const string KeyHex = "00112233445566778899aabbccddeeff0011";

    public static JsonObject Config(string store, int birdPort, int udpPort) => new()
    {
        ["store"] = new JsonObject { ["path"] = store },
        ["bgp"] = new JsonObject
        {
            ["localAs"] = 65003,
            ["routerId"] = "127.0.0.3",
            ["gracefulRestart"] = 0,
            ["peers"] = new JsonArray(new JsonObject
            {
                ["address"] = "127.0.0.2",
                ["port"] = birdPort,
                ["remoteAs"] = 65002,
                ["localAddress"] = "127.0.0.3",
                ["families"] = new JsonArray("ipv4"),
                ["holdTime"] = 30,
            }),
        },
        ["pools"] = new JsonArray(
            new JsonObject { ["name"] = "shadow-v4", ["kind"] = "shadow", ["prefixes"] = new JsonArray("10.1.0.0/24") },
            new JsonObject { ["name"] = "dynamic-v4", ["kind"] = "dynamic", ["prefixes"] = new JsonArray("10.9.0.0/24"), ["exclude"] = new JsonArray("10.9.0.1") }),
        ["routes"] = new JsonObject { ["defaultNextHopV4"] = "192.0.2.99" },
        ["hooks"] = new JsonObject { ["udp"] = new JsonObject { ["listen"] = $"127.0.0.1:{udpPort}", ["keys"] = new JsonObject { ["1"] = KeyHex } } },
    };

    public static Process Start(string configFile) =>
        Process.Start(StartInfo(configFile, redirect: false)) ?? throw new InvalidOperationException("shadownetd did not start");

    private static ProcessStartInfo StartInfo(string configFile, bool redirect, string options = "") =>
        new("dotnet", $"{Path.Combine(AppContext.BaseDirectory, "shadownetd.dll")} --config {configFile} {options}")
        {
            RedirectStandardOutput = redirect,
            RedirectStandardError = redirect,
            UseShellExecute = false,
        };

    /// <summary>Starts it with its output (its log) collected as it comes.</summary>
    public static (Process Process, Func<string> Output) StartCollectingOutput(string configFile)
    {
        var process = Process.Start(StartInfo(configFile, redirect: true)) ?? throw new InvalidOperationException("shadownetd did not start");
        var output = new System.Text.StringBuilder();
        void Collect(object? sender, DataReceivedEventArgs e)
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }
        }

        process.OutputDataReceived += Collect;
        process.ErrorDataReceived += Collect;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, () =>
        {
            lock (output)
            {
                return output.ToString();
            }
        });
    }

    public static async Task<(int Exit, string Stderr)> RunToExitAsync(string configFile, string options = "")
    {
        using var process = Process.Start(StartInfo(configFile, redirect: true, options))!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(true);
            throw new TimeoutException($"shadownetd kept running with a bad configuration: {await stdout}");
        }

        return (process.ExitCode, await stderr + await stdout);
    }

    public static void Signal(Process process, string signal) =>
        Process.Start("kill", $"-{signal} {process.Id}")!.WaitForExit();

    public static int FreeUdpPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>
    /// BIRD 2 on 127.0.0.2 expecting shadownetd (AS 65003) from 127.0.0.3; <paramref name="ipv4"/>: the channel
    /// body; <paramref name="logStates"/>: its log has a line for each state change of the session.
    /// </summary>
    public static BirdPeer Bird(int port, string ipv4 = "import all; export none;", bool logStates = false) => new($$"""
          local 127.0.0.2 port {{port}} as 65002;
          neighbor 127.0.0.3 as 65003;
          multihop; strict bind on; passive on; hold time 30;
          {{(logStates ? "debug { states };" : "")}}
          ipv4 { {{ipv4}} };
        """);
}
