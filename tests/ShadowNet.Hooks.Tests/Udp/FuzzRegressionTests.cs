using ShadowNet.Fuzz;

namespace ShadowNet.Hooks.Tests.Udp;

/// <summary>
/// The fuzzing target (tests/fuzz) on a fixed set of mutations. afl-fuzz has found no crash in the UDP
/// parser yet; one it finds goes into tests/fuzz/regressions/udp and gets a test here.
/// </summary>
public class FuzzRegressionTests
{
    [Fact]
    public void FortyThousandMutationsOfValidDatagramsAreRejectedOrParsedWithoutAnException()
    {
        var seeds = HookTarget.Seeds().Select(s => s.Bytes).ToList();
        foreach (var input in Mutations.Of(seeds, 40_000, seed: 5082))
        {
            HookTarget.Run(input);
        }
    }
}
