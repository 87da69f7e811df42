namespace ShadowNet.Fuzz;

/// <summary>
/// Deterministic mutations of seed inputs (bit flips, interesting bytes, truncations, repeated or
/// spliced slices) for a quick in-test pass over the same targets afl-fuzz drives; the test suite's
/// cheap stand-in for a fuzzing campaign, not a replacement for it.
/// </summary>
public static class Mutations
{
    private static readonly byte[] Interesting = [0x00, 0x01, 0x02, 0x03, 0x04, 0x0F, 0x10, 0x1F, 0x20, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xE0, 0xFE, 0xFF];

    public static IEnumerable<byte[]> Of(IReadOnlyList<byte[]> seeds, int count, int seed)
    {
        var random = new Random(seed);
        for (var i = 0; i < count; i++)
        {
            var input = (byte[])seeds[random.Next(seeds.Count)].Clone();
            var edits = 1 + random.Next(4);
            for (var e = 0; e < edits && input.Length > 0; e++)
            {
                var at = random.Next(input.Length);
                switch (random.Next(6))
                {
                    case 0:
                        input[at] ^= (byte)(1 << random.Next(8));
                        break;
                    case 1:
                        input[at] = Interesting[random.Next(Interesting.Length)];
                        break;
                    case 2:
                        input = input[..at];
                        break;
                    case 3:
                        var other = seeds[random.Next(seeds.Count)];
                        input = [.. input[..at], .. other[random.Next(other.Length)..]];
                        break;
                    case 4:
                        var from = random.Next(input.Length);
                        var slice = input[from..Math.Min(input.Length, from + 1 + random.Next(16))];
                        input = [.. input[..at], .. slice, .. input[at..]];
                        break;
                    default:
                        // A length or count field: two bytes at once.
                        input[at] = (byte)random.Next(256);
                        if (at + 1 < input.Length)
                        {
                            input[at + 1] = (byte)random.Next(256);
                        }

                        break;
                }
            }

            yield return input;
        }
    }
}
