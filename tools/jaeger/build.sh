#!/usr/bin/env bash
# Build Jaeger v2 all-in-one (module tag v1.76.0 == Jaeger v2.13.0) from the Go
# module proxy, using the pinned go.mod/go.sum in this directory.
#
# Output: ${GENOMHUB_CACHE:-$HOME/.cache/genomhub}/jaeger/jaeger-v1.76.0
# Idempotent: does nothing if the binary already exists (pass --force to rebuild).
set -euo pipefail

JAEGER_MODULE_VERSION="v1.76.0"   # must match go.mod
JAEGER_V2_VERSION="v2.13.0"       # same commit, reported by `jaeger version`
JAEGER_MODULE_TIME="2025-12-03T16:07:08Z"  # from the proxy's v1.76.0.info (deterministic build date)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${GENOMHUB_CACHE:-$HOME/.cache/genomhub}"
out_dir="${cache_root}/jaeger"
out="${out_dir}/jaeger-${JAEGER_MODULE_VERSION}"

force=0
[[ "${1:-}" == "--force" ]] && force=1

if [[ -x "$out" && $force -eq 0 ]]; then
  echo "jaeger already built: $out"
  exit 0
fi

GO="${GO:-}"
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else echo "error: go not found (set GO=/path/to/go)" >&2; exit 1
  fi
fi

mkdir -p "$out_dir"
tmp="$(mktemp "${out_dir}/.jaeger-build.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

echo "building jaeger ${JAEGER_V2_VERSION} (module ${JAEGER_MODULE_VERSION}) with $("$GO" version) ..."
start=$(date +%s)
cd "$here"
# -mod=mod: resolve from go.mod/go.sum via the module proxy (no vendor dir).
# GOFLAGS is overridden entirely so a caller's GOFLAGS cannot change the build.
ver_pkg="github.com/jaegertracing/jaeger/internal/version"
GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
  "$GO" build -trimpath \
    -ldflags "-s -w -X ${ver_pkg}.latestVersion=${JAEGER_V2_VERSION} -X ${ver_pkg}.date=${JAEGER_MODULE_TIME}" \
    -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "built in $(( $(date +%s) - start ))s"
echo "jaeger binary: $out"
