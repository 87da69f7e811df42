using ShadowNet.Fuzz;
using SharpFuzz;

// shadownet-fuzz bgp|udp           run under afl-fuzz (tests/fuzz/run); the input arrives on stdin
// shadownet-fuzz corpus DIR        write the seed corpus (valid messages and datagrams) into DIR/bgp and DIR/udp
// shadownet-fuzz replay bgp|udp F  run one input file outside the fuzzer (to see a crash's stack)
switch (args)
{
    case ["bgp"]:
        Fuzzer.OutOfProcess.Run(stream => BgpTarget.Run(ReadAll(stream)));
        return 0;
    case ["udp"]:
        Fuzzer.OutOfProcess.Run(stream => HookTarget.Run(ReadAll(stream)));
        return 0;
    case ["corpus", var folder]:
        SeedCorpus.Write(folder);
        return 0;
    case ["replay", "bgp", var file]:
        BgpTarget.Run(File.ReadAllBytes(file));
        return 0;
    case ["replay", "udp", var file]:
        HookTarget.Run(File.ReadAllBytes(file));
        return 0;
    default:
        Console.Error.WriteLine("usage: shadownet-fuzz bgp|udp | corpus DIR | replay bgp|udp FILE");
        return 2;
}

static byte[] ReadAll(Stream stream)
{
    using var memory = new MemoryStream();
    stream.CopyTo(memory);
    return memory.ToArray();
}
