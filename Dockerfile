# mediad container image.
#
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t mediad:dev .
#   docker run --rm -p 1935:1935 -p 127.0.0.1:8080:8080 mediad:dev
#
# deploy/README.md has the Kubernetes manifests and the in-place upgrade
# procedure; cmd/mediad/deploy_test.go checks this file against them.

# --- build ---------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, in a layer of their own: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
# Static (no cgo), so that the binary runs on any base and can be copied into
# a running container of this image for an in-place upgrade. Production
# build: the fault-injection hooks (tag faultinject) stay out.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION}" \
        -o /out/mediad ./cmd/mediad

# --- runtime -------------------------------------------------------------
# debian-slim rather than distroless or scratch: the in-place upgrade is
# done inside the running container with its own tools. `kubectl cp` needs
# tar there to unpack the new binary, and `kubectl exec ... mv` needs mv and
# a shell, to rename it over the old one atomically.
FROM debian:bookworm-slim
ARG VERSION=dev
LABEL org.opencontainers.image.title="mediad" \
      org.opencontainers.image.description="Live RTMP ingest server with in-place binary upgrades" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric uid/gid: Kubernetes can only verify runAsNonRoot against
# a numeric USER, and deployment.yaml's runAsUser names the same 10001.
RUN groupadd --gid 10001 mediad \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
        --home-dir /var/lib/mediad --shell /usr/sbin/nologin mediad \
 && mkdir -p /opt/mediad/bin /var/lib/mediad/recordings /etc/mediad \
 && chown 10001:10001 /opt/mediad/bin /var/lib/mediad /var/lib/mediad/recordings

# The binary and its directory belong to mediad's own user, not root: an
# in-place upgrade runs as that user (kubectl exec, docker exec) and must be
# able to put the new binary beside the old one and rename it over it. The
# running process keeps the old inode; `mediad upgrade` then starts the file
# now at this path. A container restart reverts to the image's binary.
COPY --from=build --chown=10001:10001 /out/mediad /opt/mediad/bin/mediad
# Root-owned and read-only to mediad; Kubernetes mounts its ConfigMap over
# /etc/mediad instead.
COPY deploy/mediad.toml /etc/mediad/mediad.toml

USER 10001:10001
WORKDIR /var/lib/mediad
# mediad runs as PID 1 here. The old process exits at the end of every live
# upgrade, and PID 1 exiting ends the container, so as PID 1 mediad becomes
# a tiny init: it runs the serving mediad as its child, forwards SIGTERM,
# SIGINT and SIGHUP to whichever process serves now, and reaps the old ones
# (cmd/mediad/pid1.go). auto = only when PID 1; set off under tini or
# `docker run --init`, which then do the reaping.
ENV MEDIAD_INIT=auto
EXPOSE 1935 8080
# A graceful stop: recordings finalised, clients told, within
# shutdown-timeout. Give `docker stop` more than that: docker stop -t 45.
STOPSIGNAL SIGTERM
# Docker's own health check (Kubernetes ignores it and uses its probes):
# the admin API answers. Follow a change of `http` in the config here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/mediad/bin/mediad", "status", "--http", "127.0.0.1:8080"]
# An absolute path: an upgrade starts the binary at the path mediad was
# started from (its argv[0]), and so does the init for its child.
ENTRYPOINT ["/opt/mediad/bin/mediad"]
CMD ["--config", "/etc/mediad/mediad.toml"]
