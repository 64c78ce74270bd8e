# The `rei` binary in a small image: built in the Rust image, run on Debian slim as a non-root user.
#
#   docker build -t rei .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://… rei        # rei serve --listen 0.0.0.0:8080
#   docker run --rm -e DATABASE_URL=postgres://… rei worker              # any other role: rei <role>
#
# No HEALTHCHECK: the runtime image has no curl or wget, and one added only for that would be one more program
# to patch. Kubernetes probes /health/live and /health/ready itself (deploy/k8s), and systemd restarts a failed
# `rei all` (deploy/systemd).

FROM rust:1.95-bookworm AS builder
WORKDIR /build

# The dependencies first, built on empty stand-ins for the workspace's own sources: this layer is rebuilt only
# when a manifest, Cargo.lock or .cargo/config.toml (the bundled SQLite's build options) changes, not when a
# source file does.
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
COPY rei-core/Cargo.toml rei-core/
COPY rei-adapters/Cargo.toml rei-adapters/
COPY rei-http/Cargo.toml rei-http/
COPY rei-bot/Cargo.toml rei-bot/
COPY rei-bin/Cargo.toml rei-bin/
RUN for crate in . rei-core rei-adapters rei-http rei-bot; do mkdir -p "$crate/src" && : > "$crate/src/lib.rs"; done \
 && mkdir -p rei-bin/src examples/embed \
 && for main in rei-bin/src/main.rs examples/billing.rs examples/embed/main.rs; do echo 'fn main() {}' > "$main"; done \
 && cargo build --release --locked -p rei-bin \
 && rm -rf src rei-core/src rei-adapters/src rei-http/src rei-bot/src rei-bin/src examples

# Then the workspace itself. COPY keeps the files' times, which may be older than the stand-ins': touching each
# crate's root makes cargo rebuild the workspace's crates (and only those).
COPY . .
RUN touch src/lib.rs rei-core/src/lib.rs rei-adapters/src/lib.rs rei-http/src/lib.rs rei-bot/src/lib.rs \
          rei-bin/src/main.rs \
 && cargo build --release --locked -p rei-bin \
 && install -m 0755 target/release/rei /usr/local/bin/rei

FROM debian:bookworm-slim
# CA certificates for the HTTPS APIs (Telegram, YooKassa, Gemini, Kling, S3); the binary needs nothing else
# (rustls, SQLite bundled, no OpenSSL).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 rei \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rei --create-home --shell /usr/sbin/nologin rei
COPY --from=builder /usr/local/bin/rei /usr/local/bin/rei
# A SQLite file or an asset directory, when the container is run on its own, goes under here (mount a volume).
WORKDIR /var/lib/rei
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rei"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
