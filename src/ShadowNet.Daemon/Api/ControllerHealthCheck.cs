using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ShadowNet.Daemon.Api;

/// <summary>
/// What the standard gRPC health service (grpc.health.v1) answers, for container probes and the CLI's
/// <c>health</c>: not serving while starting or stopping, or once the store has failed (creates and
/// deletes are refused); serving otherwise, with the sessions said in the description.
/// </summary>
internal sealed class ControllerHealthCheck(ControllerService controller) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (controller.Parts is not { } parts)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("starting or stopping"));
        }

        if (parts.Allocator.Failure is { } failure)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(failure.Message));
        }

        return Task.FromResult(HealthCheckResult.Healthy($"{parts.Speaker.PeersEstablished} of {parts.Speaker.Peers.Count} BGP sessions established"));
    }
}
