using ShadowNet.Fuzz;

namespace ShadowNet.Bgp.Tests.Wire;

/// <summary>The fuzzing target (tests/fuzz) on what afl-fuzz found and on a fixed set of mutations.</summary>
public class FuzzRegressionTests
{
    public static TheoryData<string> Findings() =>
        [.. Directory.EnumerateFiles(Repository.File("tests", "fuzz", "regressions", "bgp")).Order()];

    [Theory]
    [MemberData(nameof(Findings))]
    public void InputTheFuzzerFoundIsAnsweredWithANotificationOrAccepted(string file) => BgpTarget.Run(File.ReadAllBytes(file));

    [Fact]
    public void FortyThousandMutationsOfValidMessagesNeverEscapeAsAnythingButANotification()
    {
        var seeds = BgpTarget.Seeds().Select(s => s.Bytes).ToList();
        foreach (var input in Mutations.Of(seeds, 40_000, seed: 2385))
        {
            BgpTarget.Run(input);
        }
    }
}
