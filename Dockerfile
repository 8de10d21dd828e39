# syntax=docker/dockerfile:1
# jobcarbon: one binary, the subcommand is the first argument:
#   docker run ghcr.io/jobcarbon/jobcarbon:0.1.0 ledger --config /etc/jobcarbon/config.yaml
#   docker run -p 9464:9464 ghcr.io/jobcarbon/jobcarbon:0.1.0 demo --listen 0.0.0.0:9464

# The toolchain CI builds and tests with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The cache mounts keep the registry and compiled dependencies between builds.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin jobcarbon \
    && install -D -m 0755 target/release/jobcarbon /out/jobcarbon

# distroless "cc": glibc and libgcc, no shell or package manager. Not "static": the node agent
# loads the driver's libnvidia-ml.so at run time (NVML), which needs the dynamic loader.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="jobcarbon" \
      org.opencontainers.image.description="Life-cycle carbon (ASCe) for every AI job on Kubernetes: ledger, node agent, demo" \
      org.opencontainers.image.url="https://github.com/jobcarbon/jobcarbon" \
      org.opencontainers.image.source="https://github.com/jobcarbon/jobcarbon" \
      org.opencontainers.image.documentation="https://github.com/jobcarbon/jobcarbon/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="jobcarbon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/jobcarbon /usr/local/bin/jobcarbon
# 65532 is distroless "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9464 9465
ENTRYPOINT ["/usr/local/bin/jobcarbon"]
CMD ["--help"]
