using System.Text;

namespace ShadowNet.Hooks.Udp;

/// <summary>
/// UTF-8 names (application ids) to strings without a string per datagram: the first <paramref name="capacity"/>
/// distinct names are kept, later ones are decoded each time, so a flood of new names costs memory only
/// up to the bound. One thread uses it (the receive loop).
/// </summary>
internal sealed class NameCache(int capacity)
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public int Count => _names.Count;

    public string Get(ReadOnlySpan<byte> utf8)
    {
        Span<char> chars = stackalloc char[HookDatagram.MaxIdLength];
        var length = Encoding.UTF8.GetChars(utf8, chars);
        var lookup = _names.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(chars[..length], out var name))
        {
            return name;
        }

        name = new string(chars[..length]);
        if (_names.Count < capacity)
        {
            _names.Add(name);
        }

        return name;
    }
}
