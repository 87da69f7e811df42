using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ShadowNet.Hooks.Udp;
using static ShadowNet.Hooks.Udp.DatagramBatch;

namespace ShadowNet.Benchmarks.EndToEnd;

/// <summary>
/// The load generator's send side: a batch of hook datagrams per sendmmsg. With one host, from one
/// socket and address, as a host sending a burst would. With several, each datagram leaves from the
/// next loopback address in 127.0.1.1-127.0.1.N (IP_PKTINFO) on the same socket, bound to the wildcard
/// address so that the replies to all of them come back to it: to the daemon, a fleet of hosts whose
/// events arrive interleaved, so that no two consecutive replies go to the same place.
/// </summary>
internal sealed unsafe class RequestSender : IDisposable
{
    private const int IpProtocolIp = 0;
    private const int IpPacketInfo = 8;
    private const int ControlLength = 16 + 12; // CMSG_LEN(sizeof(struct in_pktinfo))
    private const int ControlSpace = 32; // CMSG_SPACE(12)
    private const int ErrorInterrupted = 4;

    private readonly int _fd;
    private readonly int _hosts;
    private readonly MMsgHdr* _headers;
    private readonly IoVec* _vectors;
    private readonly byte* _controls;
    private readonly byte* _destination;

    /// <param name="socket">Connected to the daemon with one host; bound to 0.0.0.0 with several.</param>
    public RequestSender(Socket socket, IPEndPoint daemon, int batch, int hosts)
    {
        _fd = (int)socket.Handle;
        _hosts = hosts;
        _headers = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)batch, (nuint)sizeof(MMsgHdr));
        _vectors = (IoVec*)NativeMemory.AllocZeroed((nuint)batch, (nuint)sizeof(IoVec));
        _controls = (byte*)NativeMemory.AllocZeroed((nuint)(batch * ControlSpace));
        _destination = (byte*)NativeMemory.AllocZeroed(16);
        var address = daemon.Serialize(); // sockaddr_in as Linux lays it out
        for (var i = 0; i < address.Size; i++)
        {
            _destination[i] = address[i];
        }

        for (var i = 0; i < batch; i++)
        {
            _headers[i].Header.Iov = &_vectors[i];
            _headers[i].Header.IovLength = 1;
            if (hosts > 1)
            {
                _headers[i].Header.Name = _destination;
                _headers[i].Header.NameLength = (uint)address.Size;
                var control = _controls + (i * ControlSpace);
                *(nuint*)control = ControlLength;
                *(int*)(control + 8) = IpProtocolIp;
                *(int*)(control + 12) = IpPacketInfo;
                _headers[i].Header.Control = control;
                _headers[i].Header.ControlLength = ControlSpace;
            }
        }
    }

    /// <summary>Sends datagrams laid out one per <paramref name="stride"/> octets; event numbers from <paramref name="firstEvent"/> pick the host.</summary>
    public void Send(ReadOnlySpan<byte> buffer, int stride, ReadOnlySpan<int> lengths, int firstEvent)
    {
        fixed (byte* first = buffer)
        {
            for (var i = 0; i < lengths.Length; i++)
            {
                _vectors[i] = new IoVec { Base = first + (i * stride), Length = (nuint)lengths[i] };
                if (_hosts > 1)
                {
                    // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }: the source.
                    var host = 1 + ((firstEvent + i) % _hosts);
                    var source = _controls + (i * ControlSpace) + 16 + 4;
                    source[0] = 127;
                    source[1] = 0;
                    source[2] = (byte)(1 + (host >> 8));
                    source[3] = (byte)host;
                }
            }

            for (var sent = 0; sent < lengths.Length;)
            {
                var result = SendMmsg(_fd, _headers + sent, (uint)(lengths.Length - sent), 0);
                sent += result > 0 ? result : Marshal.GetLastPInvokeError() == ErrorInterrupted ? 0 : 1;
            }
        }
    }

    public void Dispose()
    {
        NativeMemory.Free(_headers);
        NativeMemory.Free(_vectors);
        NativeMemory.Free(_controls);
        NativeMemory.Free(_destination);
    }
}
