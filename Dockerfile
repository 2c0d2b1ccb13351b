# Multi-stage build: compile in the Rust image, run from a slim Debian as a non-root user.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY data ./data
COPY examples ./examples
RUN cargo build --release --locked --bin superhero

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/superhero superhero \
    && mkdir -p /data && chown superhero /data
COPY --from=build /src/target/release/superhero /usr/local/bin/superhero
USER superhero
WORKDIR /home/superhero
ENV OUTPUT_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["superhero"]
CMD ["--help"]
