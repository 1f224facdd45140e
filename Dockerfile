# One file, two images:
#   CPU:  docker build -t ecsnet .
#   CUDA: docker build -t ecsnet:cuda --build-arg ECSNET_CUDA=ON .
# Both build on Debian 12 with deploy/install-deps.sh, the same script CI runs, so what CI
# tests is what the image builds. The CUDA image adds NVIDIA's CUDA 13 toolkit and cuDNN 9
# from NVIDIA's Debian 12 repository; at run time it needs the NVIDIA container toolkit
# (docker run --gpus all, or the GPU reservation in deploy/docker-compose.yml). The CUDA backend
# is a module, /opt/ecsnet/lib/libecsnet-cuda.so, which the server loads from beside its bin/
# only for --device cuda or auto; the CPU image has no module and no CUDA library.
#
# The runtime image runs as the unprivileged user ecsnet (uid and gid 10001, fixed so that
# Kubernetes' runAsNonRoot and volume permissions can rely on them), needs no writable root filesystem (docker run --read-only --tmpfs /tmp;
# everything it writes is under /var/lib/ecsnet, the data directory volume), answers its
# HEALTHCHECK on /health/live, and carries the OCI labels below (ECSNET_VERSION and
# ECSNET_REVISION as build arguments; tests/deploy/run.sh passes the git commit).
ARG ECSNET_CUDA=OFF

FROM debian:12 AS build
ARG ECSNET_CUDA
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-cuda.sh deploy/
RUN bash deploy/install-deps.sh --no-python && \
    if [ "$ECSNET_CUDA" = "ON" ]; then bash deploy/install-cuda.sh; fi
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DECSNET_TESTS=OFF -DECSNET_CUDA=${ECSNET_CUDA} \
      -DECSNET_WERROR=ON && \
    cmake --build build -j"$(nproc)"

FROM debian:12-slim AS runtime
ARG ECSNET_CUDA
ARG ECSNET_VERSION=0.1.0
ARG ECSNET_REVISION=unknown
LABEL org.opencontainers.image.title="ecsnet" \
      org.opencontainers.image.description="ECS-Net class activation maps, erased CAMs and pseudo masks over HTTP" \
      org.opencontainers.image.version="${ECSNET_VERSION}" \
      org.opencontainers.image.revision="${ECSNET_REVISION}" \
      org.opencontainers.image.base.name="debian:12-slim" \
      org.opencontainers.image.documentation="docs/deploy.md" \
      io.ecsnet.cuda="${ECSNET_CUDA}"
COPY deploy/install-deps.sh deploy/install-cuda.sh /opt/ecsnet/deploy/
RUN bash /opt/ecsnet/deploy/install-deps.sh --runtime-only && \
    if [ "$ECSNET_CUDA" = "ON" ]; then bash /opt/ecsnet/deploy/install-cuda.sh --runtime-only; fi && \
    rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 --user-group --home /var/lib/ecsnet ecsnet && \
    mkdir -p /var/lib/ecsnet/models && chown -R ecsnet:ecsnet /var/lib/ecsnet
COPY --from=build /src/build/bin/ /opt/ecsnet/bin/
# the CUDA backend module (the CPU build leaves the folder empty)
COPY --from=build /src/build/lib/ /opt/ecsnet/lib/
COPY --from=build /src/models/ /opt/ecsnet/models/
ENV PATH=/opt/ecsnet/bin:$PATH \
    ECSNET_LISTEN=0.0.0.0:8080 \
    ECSNET_DATA_DIR=/var/lib/ecsnet \
    OMP_WAIT_POLICY=passive
# numeric, so that Kubernetes' runAsNonRoot can check it
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["/opt/ecsnet/bin/ecsnet-server"]
