#!/bin/sh
# Smoke test of the built image as the chart runs it: uid 10001, a read-only root filesystem with a tmpfs on /tmp.
# `petplatform migrate` (in a container of its own, as the chart's Job; the embedded profile's stores are under its
# /tmp, so `run` migrates its own again), then `run --target=all` until the edge's /readyz answers 200. Ports in the 39xx range, so a platform already running on the defaults is left alone.
set -eu
IMAGE=$1
ENGINE=${CONTAINER:-podman}
NAME=petplatform-image-check-$$
HTTP_PORT=3900
RUN="$ENGINE run --rm --read-only --tmpfs /tmp --network=host"
ENV="-e PETPLATFORM_HTTP_PORT=$HTTP_PORT -e PETPLATFORM_GRPC_PORT=3901 -e PETPLATFORM_EDGE_GRPC_PORT=3902
     -e PETPLATFORM_WEB_PORT=3903 -e PETPLATFORM_HOST=127.0.0.1"

test "$($RUN --entrypoint id "$IMAGE" -u)" = 10001
if $RUN --entrypoint sh "$IMAGE" -c 'touch /app/written' 2>/dev/null; then
  echo "image-check: the root filesystem is writable" >&2; exit 1
fi
# shellcheck disable=SC2086
$RUN $ENV "$IMAGE" migrate
# shellcheck disable=SC2086
$ENGINE run -d --read-only --tmpfs /tmp --network=host --name "$NAME" $ENV "$IMAGE" run --target=all >/dev/null
ok=
trap '[ -n "$ok" ] || $ENGINE logs "$NAME" 2>&1 | tail -n 20; $ENGINE rm -f "$NAME" >/dev/null' EXIT
tries=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz")" = 200 ]; do
  tries=$((tries + 1))
  if [ $tries -gt 120 ] || [ "$($ENGINE inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
    echo "image-check: /readyz never answered 200" >&2; exit 1
  fi
  sleep 1
done
curl -s "http://127.0.0.1:$HTTP_PORT/readyz"; echo
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:3903/")" = 200
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:3903/admin/")" = 200
ok=1
echo "image-check: $IMAGE runs as uid 10001 on a read-only root, migrate and run --target=all: edge ready, web app and admin panel served"
