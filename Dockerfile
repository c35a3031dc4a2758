# syntax=docker/dockerfile:1
# Build: docker build -t ghcr.io/runwarden/runwarden:0.1.0 .   (BuildKit is required for the cache mounts)

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# --no-default-features leaves out the built-in Google Cloud emulator (`runwarden emulator`,
# `--gcp-endpoint embedded`), which production never runs.
# The registry, git and target caches survive between builds, so only changed crates recompile.
# target/ is a cache mount (not part of the image layer), hence the copy out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p runwarden --no-default-features \
 && cp /src/target/release/runwarden /runwarden

# glibc + libgcc for the dynamically linked binary (aws-lc is compiled in); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/runwarden/runwarden" \
      org.opencontainers.image.description="runwarden: Kubernetes controller for Google Cloud Run" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /runwarden /runwarden
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/runwarden"]
CMD ["controller"]
