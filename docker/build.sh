#!/usr/bin/env bash
# Build the images from the repository root:  docker/build.sh [cpu|cuda|all] [--dry_run]
#   algoperf:cpu   python slim + the CPU torch wheel + docker/requirements.lock
#   algoperf:cuda  the pinned PyTorch CUDA base image + docker/requirements.lock
# Extra `docker build` arguments come from $DOCKER_BUILD_ARGS (e.g. "--build-arg BASE_IMAGE=...").
# Tags: $ALGOPERF_IMAGE (default algoperf):<kind>.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-all}"
dry_run=0
[[ "${2:-}" == "--dry_run" || "${1:-}" == "--dry_run" ]] && dry_run=1
[[ "$target" == "--dry_run" ]] && target=all
image="${ALGOPERF_IMAGE:-algoperf}"

case "$target" in
  cpu|cuda) kinds=("$target") ;;
  all) kinds=(cpu cuda) ;;
  *) echo "docker/build.sh: error: unknown target '$target' (cpu, cuda or all)" >&2; exit 2 ;;
esac

for kind in "${kinds[@]}"; do
  # shellcheck disable=SC2206  # word splitting of the extra arguments is intended
  cmd=(docker build -f "docker/Dockerfile.$kind" -t "$image:$kind" ${DOCKER_BUILD_ARGS:-} .)
  if [[ $dry_run -eq 1 ]]; then
    echo "${cmd[*]}"
  else
    DOCKER_BUILDKIT=1 "${cmd[@]}"
  fi
done
