# boxoffice in a container: one image, every service (`serve --service ...` picks which).
# Build: docker build -t boxoffice .
# Run everything in one process on embedded SQLite:
#   docker run -p 8080:8080 -v boxoffice-data:/data boxoffice serve --listen 0.0.0.0:8080 --demo
# A split deployment on PostgreSQL: see docker-compose.yml.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# cmake, clang and perl build aws-lc-rs (the crypto behind rustls and the token keys).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang perl make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# The production profile (Cargo.toml): the release build with whole-program optimisation.
RUN cargo build --profile production --locked -p boxoffice --bin boxoffice \
    && cp target/production/boxoffice /usr/local/bin/boxoffice

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data boxoffice \
    && mkdir -p /data && chown boxoffice /data
COPY --from=build /usr/local/bin/boxoffice /usr/local/bin/boxoffice
USER boxoffice
ENV BOXOFFICE_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["boxoffice"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
