using BenchmarkDotNet.Running;
using ShadowNet.Benchmarks.EndToEnd;
using ShadowNet.Benchmarks.State;

if (args.Length > 0 && args[0] == "ack-latency")
{
    return await AckLatencyProbe.RunAsync(args);
}

if (args.Length > 0 && args[0] == "name-retention")
{
    return ShadowNet.Benchmarks.Addressing.NameRetentionProbe.Run(args);
}

if (args.Length > 0 && args[0] == "lease-growth")
{
    return ShadowNet.Benchmarks.Addressing.LeaseGrowthProbe.Run(args);
}

if (args.Length > 0 && args[0] == "hooks-to-bird")
{
    return await HooksToBird.RunAsync(args);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;

public partial class Program;
