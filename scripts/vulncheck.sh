#!/usr/bin/env bash
# Checks the module graph against the Go vulnerability database, offline
# from vuln.go.dev: the database is the golang.org/x/vulndb module at the
# version pinned below, fetched through the module proxy like any module,
# indexed once (its cmd/indexdb) into a cache directory, and read by
# govulncheck (a tool pinned in go.mod) with -db file://. A vulnerability
# reached from our code in a required module fails; so does one in the Go
# standard library whose fix is newer than the Go the binaries are built
# with: go.mod's toolchain line, which the Dockerfile's golang image must
# match (checked here and by internal/tools/vulnreport's tests). govulncheck
# runs under that toolchain (GOTOOLCHAIN, fetched through the module proxy
# once), so the standard library it reads is the image's. A reached one
# that no Go release fixes yet fails with VULNCHECK_STRICT=1.
# Update the database: set VULNDB_VERSION to a newer pseudo-version
# (go list -m -versions golang.org/x/vulndb) and commit it here.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
cache=${PAYPAGE_VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/paypage/vulndb}/$version
if [ ! -f "$cache/index/db.json" ]; then
  echo "vulncheck: indexing golang.org/x/vulndb@$version into $cache (once)"
  src=$(cd / && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$version" >&2; exit 2; }
  rm -rf "$cache.tmp"
  mkdir -p "$(dirname "$cache")"
  (cd / && GOFLAGS=-mod=mod go run "golang.org/x/vulndb/cmd/indexdb@$version" -vulns "$src/data/osv" -out "$cache.tmp")
  mv "$cache.tmp" "$cache"
fi
toolchain=$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' go.mod)
image=$(sed -n 's/^FROM golang:\([0-9.]*\)[-@ ].*/go\1/p' Dockerfile | head -1)
if [ -z "$toolchain" ] || [ "$toolchain" != "$image" ]; then
  echo "vulncheck: go.mod's toolchain ($toolchain) and the Dockerfile's Go ($image) must be the same release" >&2
  exit 1
fi
strict=()
[ "${VULNCHECK_STRICT:-}" = 1 ] && strict=(-strict)
set +e
GOTOOLCHAIN="$toolchain" go tool govulncheck -db "file://$cache" -format json ./... >"$cache.report.json"
rc=$?
set -e
# govulncheck exits 3 when it finds something; other codes are failures to run.
if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
  echo "vulncheck: govulncheck failed ($rc)" >&2
  exit $rc
fi
go run ./internal/tools/vulnreport -go "$toolchain" "${strict[@]}" <"$cache.report.json"
