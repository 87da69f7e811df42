using Grpc.Core;
using Grpc.Core.Interceptors;
using ShadowNet.Controller.State;

namespace ShadowNet.Daemon.Api;

/// <summary>
/// Once the state store has failed, every call that reads or changes the allocator gets Unavailable with
/// the store's failure (its file and cause), instead of the framework's bare "Exception was thrown by handler".
/// </summary>
internal sealed class StoreFailureInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (StateStoreException e)
        {
            throw Unavailable(e);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(requestStream, context);
        }
        catch (StateStoreException e)
        {
            throw Unavailable(e);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (StateStoreException e)
        {
            throw Unavailable(e);
        }
    }

    private static RpcException Unavailable(StateStoreException e) => new(new Status(StatusCode.Unavailable, e.Message));
}
