# Keyward: keyward-server and keyward-worker in one image (the compose file picks the command).
#   docker build -t keyward .
#   docker run --rm -e KEYWARD_MASTER_KEY_FILE=... -e KEYWARD_DATABASE_URL=... keyward            # server
#   docker run --rm ... keyward keyward-worker                                                      # worker

# ---- build -----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# aws-lc-sys compiles C (gcc is in the image; cmake is its fallback builder). The protos
# compile in Rust (protox): no protoc needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY shared shared
COPY server server
COPY worker worker
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p keyward-server -p keyward-worker \
 && mkdir -p /out \
 && cp target/release/keyward-server target/release/keyward-worker /out/

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/keyward --create-home keyward
COPY --from=build /out/keyward-server /out/keyward-worker /usr/local/bin/
USER keyward
WORKDIR /var/lib/keyward
# Listen on every interface inside the container; data (SQLite, when no database URL is set) here.
ENV KEYWARD_LISTEN_ADDR=0.0.0.0:50051 \
    KEYWARD_DATA_DIR=/var/lib/keyward
EXPOSE 50051
CMD ["keyward-server"]
