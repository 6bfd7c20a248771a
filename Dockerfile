# The egresswatch sensor image, for the Kubernetes DaemonSet in
# dist/kubernetes/ (or `docker run --network host --cap-drop ALL --cap-add NET_RAW`).
#   docker build --build-arg EGRESSWATCH_REVISION=$(git rev-parse --short=12 HEAD) -t egresswatch:0.1.0 .
# Build stage: the minimum Rust version and libpcap's development files.
FROM rust:1.88-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git is not in the build context (.dockerignore): the revision comes in as an argument.
ARG EGRESSWATCH_REVISION=unknown
ENV EGRESSWATCH_REVISION=${EGRESSWATCH_REVISION}
RUN cargo build --release --locked --bin egresswatch \
 && strip target/release/egresswatch

# Run stage: the binary, libpcap and the shipped rules (replaced by the
# DaemonSet's ConfigMap).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/egresswatch /usr/bin/egresswatch
COPY rules/ /etc/egresswatch/rules/
EXPOSE 8463
ENTRYPOINT ["/usr/bin/egresswatch"]
CMD ["capture", "--interface", "eth0", "--rules", "/etc/egresswatch/rules", "--eve", "-"]
