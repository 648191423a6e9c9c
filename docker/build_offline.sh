#!/usr/bin/env bash
# Build algoperf:cpu where no container registry is reachable (and no Docker daemon runs):
#
#   sudo docker/build_offline.sh [base|image|all]        (from anywhere; default all)
#
#   base   localhost/algoperf-base:bookworm, made by debootstrap from the Debian mirror (Debian
#          bookworm minbase + python3, python3-venv, tini, ca-certificates), once per store
#   image  localhost/algoperf:cpu from docker/Dockerfile.cpu on that base, with podman in chroot
#          isolation (no OCI runtime needed); cached layers are reused, so a source change
#          rebuilds only the last layers
#
# This machine's package settings reach into the build: its CA bundle and /etc/pip.conf (a
# registry behind a proxy with its own CA), and a local torch CPU wheel where one lies in
# $ALGOPERF_TORCH_WHEELS (default /opt/wheels) instead of the PyTorch index.
#
# Run a command in the image (what `docker run` would do; the image's entry point, explicitly):
#   buildah $(docker/build_offline.sh --store_flags) from --name algoperf localhost/algoperf:cpu
#   buildah $(docker/build_offline.sh --store_flags) run --isolation=chroot --user 0:0 \
#     -v "$PWD/experiments:/experiments" algoperf -- \
#     tini -s -g -- algoperf-entrypoint suite --workloads=mnist_tiny
#
# Environment: ALGOPERF_CONTAINER_STORE (image stores, default /var/tmp/algoperf-containers),
# ALGOPERF_STORAGE_DRIVER (overlay or vfs; default: overlay where it mounts),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), ALGOPERF_TORCH_WHEELS.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
store="${ALGOPERF_CONTAINER_STORE:-/var/tmp/algoperf-containers}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
wheels="${ALGOPERF_TORCH_WHEELS:-/opt/wheels}"
base=localhost/algoperf-base:bookworm
image=localhost/algoperf:cpu
# overlay where the kernel lets this process mount it (cheap layers), else vfs (a full copy of
# the file system per layer: several GB for this image); each driver has its own store.
driver="${ALGOPERF_STORAGE_DRIVER:-}"
if [[ -z "$driver" ]]; then
  driver=vfs
  probe="$(mktemp -d)"
  mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
      "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
    driver=overlay
  fi
  rm -rf "$probe"
fi
store_flags=(--root "$store/$driver/storage" --runroot "$store/$driver/run" --storage-driver "$driver")

die() { echo "build_offline.sh: error: $*" >&2; exit 2; }

target="${1:-all}"
case "$target" in
  --store_flags) echo "${store_flags[*]}"; exit 0 ;;
  base|image|all) ;;
  *) die "unknown target '$target' (base, image, all or --store_flags)" ;;
esac
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install podman buildah debootstrap"
done
[[ "$(id -u)" == 0 ]] || die "debootstrap and chroot isolation need root (run with sudo)"

make_base() {
  if podman "${store_flags[@]}" image exists "$base"; then
    echo "build_offline.sh: $base is in $store (delete it to remake it)"
    return
  fi
  local rootfs
  rootfs="$(mktemp -d /var/tmp/algoperf-rootfs.XXXXXX)"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini \
      bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -20 "$rootfs.log" >&2
    rm -rf "$rootfs"
    die "debootstrap of bookworm from $mirror failed (log: $rootfs.log)"
  fi
  rm -rf "$rootfs.log" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman "${store_flags[@]}" import - "$base" >/dev/null
  rm -rf "$rootfs"
  echo "build_offline.sh: made $base"
}

build_image() {
  local args=(--isolation=chroot --format docker -f "$repo/docker/Dockerfile.cpu"
              --ignorefile "$repo/docker/Dockerfile.cpu.dockerignore" -t "$image"
              --build-arg "BASE_IMAGE=$base")
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && args+=(
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  [[ -f /etc/pip.conf ]] && args+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  if compgen -G "$wheels/torch-*+cpu-*.whl" >/dev/null; then
    args+=(-v "$wheels:$wheels:ro" --build-arg "TORCH_FIND_LINKS=$wheels")
  fi
  podman "${store_flags[@]}" build "${args[@]}" "$repo"
  # The image a rebuild replaced (cached layers it shares stay).
  podman "${store_flags[@]}" image prune -f >/dev/null
}

[[ "$target" == image ]] || make_base
[[ "$target" == base ]] || build_image
