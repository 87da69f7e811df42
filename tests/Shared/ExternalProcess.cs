using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ShadowNet.Tests.Shared;

/// <summary>Runs a command to completion with a timeout and returns its standard output.</summary>
internal static class ExternalProcess
{
    public static async Task<string> RunAsync(string file, string arguments, TimeSpan? timeout = null)
    {
        using var p = Process.Start(new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(true);
            throw new TimeoutException($"{file} {arguments} did not finish");
        }
        return await stdout + await stderr;
    }

    public static string Which(params string[] candidates)
    {
        foreach (var c in candidates)
        {
            if (File.Exists(c))
                return c;
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
            {
                var path = Path.Combine(dir, c);
                if (File.Exists(path))
                    return path;
            }
        }
        throw new FileNotFoundException($"none of {string.Join(", ", candidates)} is installed; scripts/test installs the test peers");
    }
}

/// <summary>Hands out loopback TCP ports no other test in this run uses.</summary>
/// <remarks>
/// Ports come from 10000-32767, below Linux' ephemeral range (32768-60999): a port found free there can
/// still be taken a moment later as the local port of some connection (a peer connecting out), and the
/// peer meant to listen on it then never comes up. The probe binds every address, so a port bound on
/// any loopback address (BIRD on 127.0.0.2) counts as taken.
/// </remarks>
internal static class TestPorts
{
    private const int First = 10_000;
    private const int Last = 32_767;
    private static int _next = First + Environment.ProcessId % 2000 * 10;

    public static int Next()
    {
        while (true)
        {
            var port = First + (Interlocked.Increment(ref _next) - First) % (Last - First + 1);
            try
            {
                using var probe = new TcpListener(IPAddress.Any, port);
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }
    }
}

/// <summary>
/// Polls a condition until it holds or the time runs out (bounded: every interop wait ends). Running out
/// fails the test with the last value seen: a wait is an assertion, even where its result is not used.
/// </summary>
internal static class Eventually
{
    public static async Task<T> WaitAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, TimeSpan? interval = null)
    {
        var deadline = Stopwatch.StartNew();
        T last = await probe();
        while (!done(last))
        {
            if (deadline.Elapsed > timeout)
                throw new TimeoutException($"the condition did not hold within {timeout}; the last value seen: {Describe(last)}");
            await Task.Delay(interval ?? TimeSpan.FromMilliseconds(250));
            last = await probe();
        }
        return last;
    }

    private static string Describe<T>(T value) => value switch
    {
        null => "null",
        string { Length: > 4000 } text => $"(its last 4,000 characters) ...{text[^4000..]}",
        string text => text,
        System.Collections.IDictionary map => $"{map.Count} entries: {string.Join(", ", map.Keys.Cast<object>().Take(20))}",
        System.Collections.ICollection items => $"{items.Count} items: {string.Join(", ", items.Cast<object>().Take(20))}",
        _ => value.ToString() ?? "",
    };
}
