# syntax=docker/dockerfile:1
# Multi-stage build of the flotilla binary: a static, cgo-free executable
# (SQLite is modernc.org/sqlite, pure Go) on a distroless base, run as an
# unprivileged user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/flotilla ./cmd/flotilla && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/flotilla-agent ./cmd/flotilla-agent && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flotilla /out/flotilla-agent /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV FLOTILLA_LISTEN=0.0.0.0:8080 \
    FLOTILLA_DATA_DIR=/data
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["server"]
