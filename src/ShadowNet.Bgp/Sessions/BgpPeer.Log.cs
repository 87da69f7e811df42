using Microsoft.Extensions.Logging;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

public sealed partial class BgpPeer
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "peer {Peer}: {Previous} -> {Next}")]
        public static partial void StateChanged(ILogger logger, string peer, BgpSessionState previous, BgpSessionState next);

        [LoggerMessage(2, LogLevel.Warning, "peer {Peer}: protocol error {Code}/{Subcode}: {Reason}; sending NOTIFICATION")]
        public static partial void ProtocolError(ILogger logger, string peer, NotificationCode code, byte subcode, string reason);

        [LoggerMessage(3, LogLevel.Warning, "peer {Peer}: received NOTIFICATION {Notification}")]
        public static partial void NotificationReceived(ILogger logger, string peer, string notification);

        [LoggerMessage(4, LogLevel.Information, "peer {Peer}: connection lost: {Reason}")]
        public static partial void ConnectionLost(ILogger logger, string peer, string reason);

        [LoggerMessage(5, LogLevel.Warning, "peer {Peer}: malformed UPDATE handled by {Action} (UPDATE error subcode {Subcode}): {Reason}")]
        public static partial void UpdateError(ILogger logger, string peer, UpdateAction action, byte subcode, string? reason);

        [LoggerMessage(6, LogLevel.Error, "peer {Peer}: {Count} routes not sent: {Reason}")]
        public static partial void RouteNotExportable(ILogger logger, string peer, int count, string reason);
    }
}
