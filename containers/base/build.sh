#!/usr/bin/env bash
# Builds benchpipe's base image without any container registry: a minimal Debian bookworm
# root filesystem made by mmdebstrap from Debian's own packages, imported into each engine
# named on the command line. For air-gapped sites (point mmdebstrap at a local mirror with
# BENCHPIPE_DEBIAN_MIRROR) and for CI, where no registry can be reached.
#
#   containers/base/build.sh docker [podman]      # tag: benchpipe/debian:bookworm
#
# SOURCE_DATE_EPOCH fixes file times, so the same packages give the same root filesystem.
set -euo pipefail

TAG="${BENCHPIPE_BASE_TAG:-benchpipe/debian:bookworm}"
SUITE=bookworm
MIRROR="${BENCHPIPE_DEBIAN_MIRROR:-}"
# Python 3.11 (the wheels' ABI) and venv; nothing else a job needs comes from Debian.
PACKAGES=python3,python3-venv,ca-certificates
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1735689600}"  # 2025-01-01

[ $# -ge 1 ] || { echo "usage: $0 docker|podman [docker|podman]" >&2; exit 2; }
for engine in "$@"; do
  case "$engine" in docker|podman) ;; *) echo "$0: unknown engine '$engine' (docker or podman)" >&2; exit 2;; esac
  command -v "$engine" >/dev/null || { echo "$0: $engine is not installed" >&2; exit 1; }
done
command -v mmdebstrap >/dev/null || { echo "$0: mmdebstrap is not installed (Debian/Ubuntu package mmdebstrap)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs.tar"
# minbase: essential packages and apt only; docs and caches are dropped to keep it small.
mmdebstrap --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$SUITE" "$rootfs" ${MIRROR:+"$MIRROR"}

changes=(--change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]')
for engine in "$@"; do
  if [ "$engine" = podman ]; then
    podman --runtime runc import "${changes[@]}" "$rootfs" "$TAG" >/dev/null
    echo "podman: $TAG $(podman --runtime runc image inspect --format '{{.Id}}' "$TAG")"
  else
    docker import "${changes[@]}" "$rootfs" "$TAG" >/dev/null
    echo "docker: $TAG $(docker image inspect --format '{{.Id}}' "$TAG")"
  fi
done
