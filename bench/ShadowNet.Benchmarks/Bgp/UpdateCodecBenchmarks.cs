using System.Buffers;
using System.Net;
using BenchmarkDotNet.Attributes;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Benchmarks.Bgp;

/// <summary>
/// Encode and decode of full UPDATEs of host routes (4096-octet messages). One operation is one
/// message; prefixes per second = PrefixesPerMessage / mean time.
/// </summary>
[MemoryDiagnoser]
public class UpdateCodecBenchmarks
{
    private RoutePrefix[] _v4 = [];
    private RoutePrefix[] _v6 = [];
    private EncodedAttributes _v4Attributes = null!;
    private EncodedAttributes _v6Attributes = null!;
    private readonly FixedBufferWriter _writer = new(BgpConstants.ExtendedMaxMessageLength);
    private byte[] _v4Message = [];
    private byte[] _v6Message = [];
    private ReadOnlySequence<byte> _v4Body;
    private ReadOnlySequence<byte> _v6Body;
    private readonly UpdateMessage _update = new();

    public int V4PrefixesPerMessage { get; private set; }
    public int V6PrefixesPerMessage { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        _v4 = Enumerable.Range(0, 2000).Select(i => RoutePrefix.IPv4(0x0A000000u + (uint)i, 32)).ToArray();
        _v6 = Enumerable.Range(0, 500).Select(i => RoutePrefix.IPv6(RoutePrefix.ToUInt128(IPAddress.Parse("2001:db8::")) + (UInt128)i, 128)).ToArray();
        var context = new ExportContext(65003, true, true, IPAddress.Parse("127.0.0.3"), null, false);
        var attributes = new RouteAttributes { NextHop = IPAddress.Parse("192.0.2.10"), Communities = [0xFDEB0007], LargeCommunities = [new LargeCommunity(65003, 1, 0)] };
        _v4Attributes = UpdateEncoder.Encode(attributes, AddressFamily.IPv4Unicast, context);
        _v6Attributes = UpdateEncoder.Encode(new RouteAttributes { NextHop = IPAddress.Parse("2001:db8::1"), Communities = [0xFDEB0007] }, AddressFamily.IPv6Unicast, context);

        _writer.Reset();
        V4PrefixesPerMessage = UpdateEncoder.WriteAnnounce(_writer, _v4Attributes, _v4, BgpConstants.MaxMessageLength);
        _v4Message = _writer.Written.ToArray();
        _writer.Reset();
        V6PrefixesPerMessage = UpdateEncoder.WriteAnnounce(_writer, _v6Attributes, _v6, BgpConstants.MaxMessageLength);
        _v6Message = _writer.Written.ToArray();
        _v4Body = new ReadOnlySequence<byte>(_v4Message, 19, _v4Message.Length - 19);
        _v6Body = new ReadOnlySequence<byte>(_v6Message, 19, _v6Message.Length - 19);
        Console.WriteLine($"// prefixes per 4096-octet UPDATE: IPv4 /32 {V4PrefixesPerMessage}, IPv6 /128 {V6PrefixesPerMessage}");
    }

    [Benchmark(Description = "encode UPDATE, IPv4 /32 (806 prefixes)")]
    public int EncodeIPv4()
    {
        _writer.Reset();
        return UpdateEncoder.WriteAnnounce(_writer, _v4Attributes, _v4, BgpConstants.MaxMessageLength);
    }

    [Benchmark(Description = "decode UPDATE, IPv4 /32 (806 prefixes)")]
    public int DecodeIPv4()
    {
        _update.Parse(_v4Body, UpdateParseContext.FourOctetIbgp);
        return _update.Announced.Count;
    }

    [Benchmark(Description = "encode UPDATE, IPv6 /128")]
    public int EncodeIPv6()
    {
        _writer.Reset();
        return UpdateEncoder.WriteAnnounce(_writer, _v6Attributes, _v6, BgpConstants.MaxMessageLength);
    }

    [Benchmark(Description = "decode UPDATE, IPv6 /128")]
    public int DecodeIPv6()
    {
        _update.Parse(_v6Body, UpdateParseContext.FourOctetIbgp);
        return _update.Announced.Count;
    }

    /// <summary>An <see cref="IBufferWriter{T}"/> over one reused array: the benchmark measures the codec, not buffer growth.</summary>
    private sealed class FixedBufferWriter(int capacity) : IBufferWriter<byte>
    {
        private readonly byte[] _buffer = new byte[capacity];
        private int _written;

        public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _written);
        public void Reset() => _written = 0;
        public void Advance(int count) => _written += count;
        public Memory<byte> GetMemory(int sizeHint = 0) => _buffer.AsMemory(_written);
        public Span<byte> GetSpan(int sizeHint = 0) => _buffer.AsSpan(_written);
    }
}
