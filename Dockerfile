# runnerd and runexec in one image; `make image` builds it.
# runnerd is the entrypoint (`serve` by default); it starts runexec from the
# same directory for each run. Configure with RUNNERD_* variables (see
# `runnerd serve --help` and docs/operations.md).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static binaries, no cgo. The production build (tag nodev) leaves the
# embedded servers of `runnerd dev` out: 204 fewer packages, a binary a third
# smaller and about 16 MiB less resident memory per runnerd
# (docs/architecture.md, "One binary, two builds").
RUN CGO_ENABLED=0 go build -trimpath -tags nodev \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ ./cmd/runnerd ./cmd/runexec

# Workflow steps run shell commands: the runtime image is a small Debian with
# /bin/sh and coreutils, not a scratch image. Add the tools your workflows
# need in an image built FROM this one.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/runnerd runnerd
COPY --from=build /out/runnerd /out/runexec /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/runnerd
ENV RUNNERD_RUN_DIR=/var/lib/runnerd/runs
EXPOSE 9090
ENTRYPOINT ["runnerd"]
CMD ["serve"]
