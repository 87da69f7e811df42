# shadownetd in a container: multi-stage build, ASP.NET Core runtime image (the gRPC API runs on
# Kestrel), non-root user, state on a volume.
#
#   docker build -t shadownet .
#   docker run -d --name shadownetd --network host \
#     -v /etc/shadownet:/etc/shadownet:ro -v shadownet-state:/var/lib/shadownet shadownet
#   docker exec shadownetd shadownet status --server unix:/var/lib/shadownet/grpc.sock
#
# The configuration is /etc/shadownet/shadownetd.json (docs/operator-guide.md); keep store:path,
# events:missLog and a unix: grpc:listen under /var/lib/shadownet. --network host lets the daemon
# reach the routers and hypervisors reach its UDP hook; as the non-root user it cannot listen on
# port 179, so peer actively (the default) or give bgp:listen a port above 1023.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
# Restore first, from the project files alone, so that the layer survives source edits.
COPY Directory.Build.props Directory.Packages.props .editorconfig ./
COPY src/ShadowNet.Addressing/ShadowNet.Addressing.csproj src/ShadowNet.Addressing/
COPY src/ShadowNet.Api/ShadowNet.Api.csproj src/ShadowNet.Api/
COPY src/ShadowNet.Bgp/ShadowNet.Bgp.csproj src/ShadowNet.Bgp/
COPY src/ShadowNet.Cli/ShadowNet.Cli.csproj src/ShadowNet.Cli/
COPY src/ShadowNet.Controller/ShadowNet.Controller.csproj src/ShadowNet.Controller/
COPY src/ShadowNet.Daemon/ShadowNet.Daemon.csproj src/ShadowNet.Daemon/
COPY src/ShadowNet.Hooks/ShadowNet.Hooks.csproj src/ShadowNet.Hooks/
COPY src/ShadowNet.Prediction/ShadowNet.Prediction.csproj src/ShadowNet.Prediction/
RUN dotnet restore src/ShadowNet.Cli/ShadowNet.Cli.csproj -r linux-x64
COPY src/ src/
COPY models/shadownet-lstm.onnx models/
RUN dotnet publish src/ShadowNet.Daemon -c Release -r linux-x64 --self-contained false --no-restore -o /out/daemon \
 && dotnet publish src/ShadowNet.Cli -c Release -r linux-x64 --self-contained false --no-restore -o /out/cli

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
COPY --from=build /out/daemon /opt/shadownet/daemon
COPY --from=build /out/cli /opt/shadownet/cli
COPY models/shadownet-lstm.onnx /opt/shadownet/
COPY config/shadownet.example.json /etc/shadownet/shadownet.example.json
RUN printf '#!/bin/sh\nexec dotnet /opt/shadownet/cli/shadownet.dll "$@"\n' > /usr/local/bin/shadownet \
 && chmod 755 /usr/local/bin/shadownet \
 && mkdir -p /var/lib/shadownet && chown "$APP_UID" /var/lib/shadownet
# $APP_UID: the images' unprivileged "app" user.
USER $APP_UID
VOLUME /var/lib/shadownet
# 4790/udp hooks, 50051 gRPC, 9464 Prometheus /metrics, 1179 an unprivileged BGP listener (see above).
EXPOSE 4790/udp 50051/tcp 9464/tcp 1179/tcp
# Healthy while the daemon serves (grpc.health.v1: not while starting, nor once its store has failed).
# It asks the gRPC API: give shadownetd a grpc:listen, at this socket unless SHADOWNET_SERVER says otherwise.
ENV SHADOWNET_SERVER=unix:/var/lib/shadownet/grpc.sock
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s CMD ["shadownet", "health"]
ENTRYPOINT ["dotnet", "/opt/shadownet/daemon/shadownetd.dll"]
CMD ["--config", "/etc/shadownet/shadownetd.json"]
