# A local stand-in for rust:1.95-bookworm, for machines that cannot pull it (dev/containers.sh):
# Debian bookworm's rustc-web/cargo-web (1.96, above our MSRV) and a C toolchain, with cargo at
# the official image's paths. The host's CA bundle is trusted, as an intercepting proxy needs.
FROM docker.io/library/debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends rustc-web cargo-web build-essential pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
