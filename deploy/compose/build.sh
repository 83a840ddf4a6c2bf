#!/bin/sh
# Builds the stack's images: the proxy and the hub (from this workspace) and seed 002's personal
# single-user image (the `build` profile). Extra arguments go to `build`, e.g. ./build.sh --no-cache
# Works with Debian's docker-compose 1.29 and with compose v2 (`docker compose`).
set -eu
cd "$(dirname "$0")"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-jupyterhub}"
if docker compose version >/dev/null 2>&1; then
  compose() { docker compose "$@"; }
else
  compose() { docker-compose "$@"; }
fi
if [ ! -f stack.env ]; then
  echo "build.sh: no stack.env here: cp example-stack.env stack.env && chmod 600 stack.env, then fill it in" >&2
  exit 1
fi
compose --env-file stack.env build "$@" proxy jupyterhub
compose --env-file stack.env --profile build build "$@" singleuser
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^(seahorse/(proxy|hub)|personal-jupyter-singleuser):'
