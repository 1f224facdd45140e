# One file, two images:
#   CPU:  docker build -t ecsnet .
#   CUDA: docker build -t ecsnet:cuda --build-arg ECSNET_CUDA=ON .
# Both build on Debian 12 with deploy/install-deps.sh, the same script CI runs, so what CI
# tests is what the image builds. The CUDA image adds NVIDIA's CUDA 13 toolkit and cuDNN 9
# from NVIDIA's Debian 12 repository; at run time it needs the NVIDIA container toolkit
# (docker run --gpus all, or the GPU reservation in deploy/docker-compose.yml). The CUDA backend
# is a module, /opt/ecsnet/lib/libecsnet-cuda.so, which the server loads from beside its bin/
# only for --device cuda or auto; the CPU image has no module and no CUDA library.
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
COPY deploy/install-deps.sh deploy/install-cuda.sh /opt/ecsnet/deploy/
RUN bash /opt/ecsnet/deploy/install-deps.sh --runtime-only && \
    if [ "$ECSNET_CUDA" = "ON" ]; then bash /opt/ecsnet/deploy/install-cuda.sh --runtime-only; fi && \
    rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/ecsnet ecsnet && \
    mkdir -p /var/lib/ecsnet && chown ecsnet /var/lib/ecsnet
COPY --from=build /src/build/bin/ /opt/ecsnet/bin/
# the CUDA backend module (the CPU build leaves the folder empty)
COPY --from=build /src/build/lib/ /opt/ecsnet/lib/
COPY --from=build /src/models/ /opt/ecsnet/models/
ENV PATH=/opt/ecsnet/bin:$PATH \
    ECSNET_LISTEN=0.0.0.0:8080 \
    ECSNET_DATA_DIR=/var/lib/ecsnet \
    OMP_WAIT_POLICY=passive
USER ecsnet
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["/opt/ecsnet/bin/ecsnet-server"]
