namespace ShadowNet.Fuzz;

/// <summary>Writes each target's seeds into DIR/bgp and DIR/udp for afl-fuzz -i.</summary>
public static class SeedCorpus
{
    public static void Write(string folder)
    {
        foreach (var (target, seeds) in new[] { ("bgp", BgpTarget.Seeds()), ("udp", HookTarget.Seeds()) })
        {
            var into = Directory.CreateDirectory(Path.Combine(folder, target)).FullName;
            foreach (var (name, bytes) in seeds)
            {
                File.WriteAllBytes(Path.Combine(into, name), bytes);
            }
        }
    }
}
