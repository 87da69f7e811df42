using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.CrashWorker;
using ShadowNet.Controller.State;

// Usage: ShadowNet.Controller.CrashWorker STORE RUN SEED WORKERS
// Runs until killed (or for 60 s at most, so a lost parent never leaves it running).
if (args.Length != 4)
{
    Console.Error.WriteLine("usage: ShadowNet.Controller.CrashWorker STORE RUN SEED WORKERS");
    return 2;
}

var run = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
var seed = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
var workers = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
await using var allocator = DurableAllocator.Open(CrashWorkload.Pools(), SqliteAllocationStore.Open(args[0]));
var output = TextWriter.Synchronized(new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true });
output.WriteLine("READY");
using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
try
{
    await Task.WhenAll(Enumerable.Range(0, workers).Select(w => Task.Run(() => CrashWorkload.RunWorkerAsync(allocator, w, run, seed, output, stop.Token))));
}
catch (OperationCanceledException)
{
}

return 0;
