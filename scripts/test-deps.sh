#!/usr/bin/env bash
# Installs what paypage's tests need, from Debian's packages: redis-server for
# the Redis store tests, chromium for the browser tests, openssl for the
# deployment test (deploy/make-secrets.sh). Does nothing when they are there
# already.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
redis-server --version | head -n1
chromium --version 2>/dev/null | head -n1 || true
