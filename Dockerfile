# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t dirsyncd .
# Run:   docker run -v /path/config.yaml:/etc/dirsyncd/config.yaml:ro -p 8080:8080 dirsyncd
# (set server.listen to 0.0.0.0:8080 in the config; the SQLite store path must be on a writable volume.)

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# modernc.org/sqlite is pure Go, so the binary is static and needs no libc.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/dirsyncd ./cmd/dirsyncd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dirsyncd /dirsyncd
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/dirsyncd"]
CMD ["serve", "--config", "/etc/dirsyncd/config.yaml"]
