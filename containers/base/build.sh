#!/usr/bin/env bash
# Builds benchpipe's base image without any container registry: a minimal Debian bookworm
# root filesystem made by mmdebstrap from Debian's own packages, loaded into each engine
# named on the command line (or in BENCHPIPE_BASE_ENGINES). For air-gapped sites (point
# mmdebstrap at a local mirror with BENCHPIPE_DEBIAN_MIRROR) and for CI, where no registry
# can be reached.
#
#   containers/base/build.sh docker [podman]      # tag: benchpipe/debian:bookworm
#
# Reproducible: SOURCE_DATE_EPOCH fixes file times, so the same Debian packages give the same
# root filesystem byte for byte, and the image is loaded from an archive written here with a
# fixed creation time rather than imported (an import stamps the current time). The image id
# is then the same on every machine and in both engines for as long as the suite's packages
# do not change, so image records built on it stay comparable.
set -euo pipefail

TAG="${BENCHPIPE_BASE_TAG:-benchpipe/debian:bookworm}"
SUITE=bookworm
MIRROR="${BENCHPIPE_DEBIAN_MIRROR:-}"
# Python 3.11 (the wheels' ABI) and venv with its bundled pip; nothing else a job needs comes
# from Debian.
PACKAGES=python3,python3-venv,ca-certificates
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1735689600}"  # 2025-01-01

if [ $# -eq 0 ] && [ -n "${BENCHPIPE_BASE_ENGINES:-}" ]; then
  read -r -a engines <<<"$BENCHPIPE_BASE_ENGINES"
  set -- "${engines[@]}"
fi
[ $# -ge 1 ] || { echo "usage: $0 docker|podman [docker|podman]  (or BENCHPIPE_BASE_ENGINES='docker podman')" >&2; exit 2; }
for engine in "$@"; do
  case "$engine" in docker|podman) ;; *) echo "$0: unknown engine '$engine' (docker or podman)" >&2; exit 2;; esac
  command -v "$engine" >/dev/null || { echo "$0: $engine is not installed" >&2; exit 1; }
done
command -v mmdebstrap >/dev/null || { echo "$0: mmdebstrap is not installed (Debian/Ubuntu package mmdebstrap)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/archive"
rootfs="$work/rootfs.tar"
SECONDS=0
# minbase: essential packages and apt only; docs and caches are dropped to keep it small.
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$SUITE" "$rootfs" ${MIRROR:+"$MIRROR"}
echo "root filesystem: $(du -m "$rootfs" | cut -f1) MB in ${SECONDS}s"

# A docker-archive (what `docker save` writes) with one layer: both engines load it, and
# both take the image id from the config's sha256, so the id is the same in each.
layer_sha=$(sha256sum "$rootfs" | cut -d' ' -f1)
mkdir "$work/archive/$layer_sha"
mv "$rootfs" "$work/archive/$layer_sha/layer.tar"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"mmdebstrap --variant=minbase --include=%s %s"}]}' \
  "$created" "$layer_sha" "$created" "$PACKAGES" "$SUITE" >"$work/config.json"
config_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/archive/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":null,"Layers":["%s/layer.tar"]}]' "$config_sha" "$layer_sha" \
  >"$work/archive/manifest.json"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$work/archive" -cf "$work/image.tar" .
rm -rf "$work/archive"

for engine in "$@"; do
  if [ "$engine" = podman ]; then
    # Any OCI runtime would do for load and tag; runc is the one that works on our hosts.
    podman --runtime runc load --quiet --input "$work/image.tar" >/dev/null
    podman --runtime runc tag "$config_sha" "$TAG"
  else
    docker load --quiet --input "$work/image.tar" >/dev/null
    docker tag "sha256:$config_sha" "$TAG"
  fi
  echo "$engine: $TAG sha256:$config_sha"
done
echo "done in ${SECONDS}s"
