# syntax=docker/dockerfile:1
# A small, non-root, static image of paypage.
FROM golang:1.26.11-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/paypage ./cmd/paypage && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/paypage /paypage
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV PAYPAGE_ADDR=0.0.0.0:8080 PAYPAGE_DATA=/data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/paypage"]
CMD ["serve"]
