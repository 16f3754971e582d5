# Builds arl's server (and the simulated provider, for demos) into a small image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/arl-extproc ./cmd/extproc \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/simprovider ./cmd/simprovider

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/arl-extproc"]
